// Package kafkaname holds what the Kafka sink and source must agree on:
// the legal form of a topic name and the header that carries a record's
// identity.
package kafkaname

import "fmt"

// IDHeader is the message header that carries a record's identity,
// "<device>/<seq>/<part>", written by the Kafka sink and read by the Kafka
// source, so that consumers can drop duplicates.
const IDHeader = "sluice-id"

// CheckTopic applies Kafka's rules for topic names, so that a bad name is
// reported before it reaches a broker.
func CheckTopic(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("empty topic name")
	case name == "." || name == "..":
		return fmt.Errorf("topic name %q is not allowed", name)
	case len(name) > 249:
		return fmt.Errorf("topic name is %d characters long, the limit is 249", len(name))
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("topic name %q: only a-z, A-Z, 0-9, '.', '_' and '-' are allowed", name)
		}
	}
	return nil
}
