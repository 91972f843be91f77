// Package e2e holds end-to-end tests that run whole pipelines from YAML
// against the real local Kafka and ClickHouse (scripts/services.sh start).
package e2e
