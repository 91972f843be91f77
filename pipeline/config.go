package pipeline

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// File is a parsed pipeline.yaml.
//
//	http: { listen: 127.0.0.1:9100 }      # optional: /metrics and /healthz
//	pipelines:
//	  ingest:                              # name: [a-z0-9_-]+
//	    source:     { websocket: {...} }   # exactly one source
//	    transforms: [ { wasm: {...} } ]    # run in list order
//	    sinks:      [ { kafka: {...} }, { clickhouse: {...} } ]
//	    dead_letter: { file: {...} }       # optional: where failed records go
//	endpoints:                             # optional services beside the pipelines
//	  - subscriptions: {...}
type File struct {
	// Path is the file the config was read from.
	Path string `yaml:"-"`
	// HTTP is the optional operations endpoint.
	HTTP HTTPConfig `yaml:"http"`
	// Pipelines are sorted by name.
	Pipelines []Spec `yaml:"-"`
	// Endpoints are long-running services beside the pipelines, such as
	// the subscription endpoint that streams Kafka topics to devices.
	Endpoints []Component `yaml:"endpoints"`
	// RawPipelines holds pipelines by name as written.
	RawPipelines map[string]Spec `yaml:"pipelines"`
}

// HTTPConfig configures the operations endpoint that serves /metrics
// (Prometheus) and /healthz.
type HTTPConfig struct {
	// Listen is host:port; empty disables the endpoint.
	Listen string `yaml:"listen"`
}

// Spec is one pipeline as declared in pipeline.yaml.
type Spec struct {
	Name       string      `yaml:"-"`
	Source     Component   `yaml:"source"`
	Transforms []Component `yaml:"transforms"`
	Sinks      []Component `yaml:"sinks"`
	DeadLetter *Component  `yaml:"dead_letter"`
	// Workers is how many batches each transform processes at once
	// (default: the number of CPUs).
	Workers int `yaml:"workers"`
	// DrainTimeout bounds how long a stopping pipeline waits for in-flight
	// records to reach their sinks (default 10s).
	DrainTimeout time.Duration `yaml:"drain_timeout"`
}

// Component is one source, transform or sink as written: a map with a single
// key, the kind, whose value is that kind's config.
//
//	kafka: { brokers: [127.0.0.1:9092], topic: telemetry }
type Component struct {
	// Kind is the key, e.g. "kafka".
	Kind string
	// Where is the path of the component in the file, e.g.
	// "pipelines.ingest.sinks[0]", set by Load.
	Where string
	// File is the config file, set by Load.
	File string
	// Line is the line of the kind key.
	Line int

	node *yaml.Node
}

// UnmarshalYAML keeps the node so that the registry can decode the config
// into the kind's own type later.
func (c *Component) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode || len(n.Content) != 2 {
		return &ConfigError{Line: n.Line, Msg: "must be a map with exactly one key, the component kind (e.g. kafka: {...})"}
	}
	c.Kind = n.Content[0].Value
	c.Line = n.Content[0].Line
	c.node = n.Content[1]
	return nil
}

// ConfigError is a problem in pipeline.yaml at a line.
type ConfigError struct {
	File string
	Line int
	// Path is the dotted path of the field, e.g. pipelines.ingest.sinks[0].kafka.topic.
	Path string
	Msg  string
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// FieldError is returned by a component's Validate for an invalid field, so
// that the error can point at the field's line.
type FieldError struct {
	// Field is the dotted key path inside the component's config.
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// Invalid returns a *FieldError for field.
func Invalid(field, format string, args ...any) error {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// Load reads and parses pipeline.yaml at path, checking its structure
// (unknown keys, wrong types). Component configs are checked by the
// registry, which knows each kind.
func Load(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, data)
}

// Parse parses the YAML in data as if read from path.
func Parse(path string, data []byte) (*File, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, yamlError(path, err)
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil, &ConfigError{File: path, Msg: "empty file: expected a map with a pipelines key"}
	}
	root := doc.Content[0]
	f := &File{Path: path}
	var errs []error
	for _, e := range checkKeys(root, reflect.TypeOf(f).Elem(), "") {
		e.File = path
		errs = append(errs, e)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if err := root.Decode(f); err != nil {
		return nil, withPaths(yamlError(path, err), root, "")
	}
	pipesNode := lookup(root, "pipelines")
	if pipesNode == nil || len(f.RawPipelines) == 0 {
		return nil, &ConfigError{File: path, Line: root.Line, Path: "pipelines", Msg: "required: at least one pipeline"}
	}
	for name, spec := range f.RawPipelines {
		spec.Name = name
		where := "pipelines." + name
		line := keyLine(pipesNode, name)
		if !nameRE.MatchString(name) {
			errs = append(errs, &ConfigError{File: path, Line: line, Path: where, Msg: "pipeline names use a-z, 0-9, _ and -"})
		}
		specNode := lookup(pipesNode, name)
		if spec.Source.Kind == "" {
			errs = append(errs, &ConfigError{File: path, Line: line, Path: where + ".source", Msg: "required"})
		}
		spec.Source.locate(path, where+".source")
		for i := range spec.Transforms {
			spec.Transforms[i].locate(path, fmt.Sprintf("%s.transforms[%d]", where, i))
		}
		if len(spec.Sinks) == 0 {
			errs = append(errs, &ConfigError{File: path, Line: nodeLine(specNode, line), Path: where + ".sinks", Msg: "required: at least one sink"})
		}
		for i := range spec.Sinks {
			spec.Sinks[i].locate(path, fmt.Sprintf("%s.sinks[%d]", where, i))
		}
		if spec.DeadLetter != nil {
			spec.DeadLetter.locate(path, where+".dead_letter")
		}
		if spec.Workers < 0 {
			errs = append(errs, &ConfigError{File: path, Line: keyLine(specNode, "workers"), Path: where + ".workers", Msg: "must not be negative"})
		}
		if spec.DrainTimeout < 0 {
			errs = append(errs, &ConfigError{File: path, Line: keyLine(specNode, "drain_timeout"), Path: where + ".drain_timeout", Msg: "must not be negative"})
		}
		if spec.DrainTimeout == 0 {
			spec.DrainTimeout = 10 * time.Second
		}
		f.Pipelines = append(f.Pipelines, spec)
	}
	for i := range f.Endpoints {
		f.Endpoints[i].locate(path, fmt.Sprintf("endpoints[%d]", i))
	}
	sort.Slice(f.Pipelines, func(i, j int) bool { return f.Pipelines[i].Name < f.Pipelines[j].Name })
	if len(errs) > 0 {
		sortErrors(errs)
		return nil, errors.Join(errs...)
	}
	return f, nil
}

func (c *Component) locate(file, where string) {
	c.File, c.Where = file, where
}

// Decode decodes the component's config into out, a pointer to the kind's
// Config struct, rejecting unknown keys and values of the wrong type with
// the line they are on.
func (c *Component) Decode(out any) error {
	if c.node == nil {
		return nil
	}
	if c.node.Kind == yaml.ScalarNode && c.node.Tag == "!!null" {
		return nil // "stdout:" with no settings
	}
	var errs []error
	for _, e := range checkKeys(c.node, reflect.TypeOf(out).Elem(), c.Where+"."+c.Kind) {
		e.File = c.File
		errs = append(errs, e)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if err := c.node.Decode(out); err != nil {
		return withPaths(yamlError(c.File, err), c.node, c.Where+"."+c.Kind)
	}
	return nil
}

// withPaths names the field of each *ConfigError in err that has a line but
// no path, by finding the key on that line under n.
func withPaths(err error, n *yaml.Node, prefix string) error {
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	for _, e := range errs {
		var ce *ConfigError
		if errors.As(e, &ce) && ce.Path == "" && ce.Line > 0 {
			var value string // yaml quotes the offending value: !!str `lots`
			if m := quotedValueRE.FindStringSubmatch(ce.Msg); m != nil {
				value = m[1]
			}
			ce.Path = pathAtLine(n, ce.Line, value, prefix)
		}
	}
	return errors.Join(errs...)
}

var quotedValueRE = regexp.MustCompile("`([^`]*)`")

// pathAtLine returns the dotted path of the scalar on line under n (the one
// whose text is value, when value is not empty), or prefix when there is
// none.
func pathAtLine(n *yaml.Node, line int, value, prefix string) string {
	match := func(v *yaml.Node) bool {
		return v.Line == line && v.Kind == yaml.ScalarNode && (value == "" || v.Value == value)
	}
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := join(prefix, k.Value)
			if match(v) {
				return p
			}
			if found := pathAtLine(v, line, value, p); found != p {
				return found
			}
		}
	case yaml.SequenceNode:
		for i, item := range n.Content {
			p := fmt.Sprintf("%s[%d]", prefix, i)
			if match(item) {
				return p
			}
			if found := pathAtLine(item, line, value, p); found != p {
				return found
			}
		}
	}
	return prefix
}

// Errorf returns a *ConfigError at the component's line.
func (c *Component) Errorf(format string, args ...any) error {
	return &ConfigError{File: c.File, Line: c.Line, Path: c.Where, Msg: fmt.Sprintf(format, args...)}
}

// Wrap turns an error from the component's Validate or constructor into a
// *ConfigError that names the file, the line and the field. A *FieldError
// points at its field's line; any other error at the component's line.
func (c *Component) Wrap(err error) error {
	if err == nil {
		return nil
	}
	var ce *ConfigError
	if errors.As(err, &ce) {
		return err
	}
	var fe *FieldError
	if errors.As(err, &fe) {
		line := c.Line
		n := c.node
		for _, key := range strings.Split(fe.Field, ".") {
			if n == nil {
				break
			}
			if l := keyLine(n, key); l > 0 {
				line = l
			}
			n = lookup(n, key)
		}
		return &ConfigError{File: c.File, Line: line, Path: c.Where + "." + c.Kind + "." + fe.Field, Msg: fe.Msg}
	}
	return &ConfigError{File: c.File, Line: c.Line, Path: c.Where + "." + c.Kind, Msg: err.Error()}
}

var unmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()

// checkKeys walks n beside the Go type t and reports every map key that t
// has no field for. Type mismatches are left to yaml's Decode.
func checkKeys(n *yaml.Node, t reflect.Type, path string) []*ConfigError {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if t == reflect.TypeOf(Component{}) {
		if n.Kind != yaml.MappingNode || len(n.Content) != 2 {
			return []*ConfigError{{Line: n.Line, Path: path,
				Msg: "must be a map with exactly one key, the component kind (e.g. kafka: {...})"}}
		}
		return nil
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		return nil
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode || t == reflect.TypeOf(time.Time{}) {
			return nil
		}
		fields := map[string]reflect.Type{}
		var names []string
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name := strings.Split(f.Tag.Get("yaml"), ",")[0]
			if name == "-" {
				continue
			}
			if name == "" {
				name = strings.ToLower(f.Name)
			}
			fields[name] = f.Type
			names = append(names, name)
		}
		sort.Strings(names)
		var errs []*ConfigError
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			ft, ok := fields[k.Value]
			if !ok {
				errs = append(errs, &ConfigError{Line: k.Line, Path: join(path, k.Value),
					Msg: fmt.Sprintf("unknown field %q (valid: %s)", k.Value, strings.Join(names, ", "))})
				continue
			}
			errs = append(errs, checkKeys(v, ft, join(path, k.Value))...)
		}
		return errs
	case reflect.Slice, reflect.Array:
		if n.Kind != yaml.SequenceNode {
			return nil
		}
		var errs []*ConfigError
		for i, item := range n.Content {
			errs = append(errs, checkKeys(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i))...)
		}
		return errs
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return nil
		}
		var errs []*ConfigError
		for i := 0; i+1 < len(n.Content); i += 2 {
			errs = append(errs, checkKeys(n.Content[i+1], t.Elem(), join(path, n.Content[i].Value))...)
		}
		return errs
	}
	return nil
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// lookup returns the value node of key in mapping n, or nil.
func lookup(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// keyLine returns the line of key in mapping n, or 0.
func keyLine(n *yaml.Node, key string) int {
	if n == nil || n.Kind != yaml.MappingNode {
		return 0
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i].Line
		}
	}
	return 0
}

func nodeLine(n *yaml.Node, fallback int) int {
	if n == nil {
		return fallback
	}
	return n.Line
}

var yamlLineRE = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// yamlError rewrites yaml's "line N: msg" errors as file:N: msg.
func yamlError(path string, err error) error {
	var ce *ConfigError
	if errors.As(err, &ce) {
		ce.File = path
		return ce
	}
	var te *yaml.TypeError
	msgs := []string{err.Error()}
	if errors.As(err, &te) {
		msgs = te.Errors
	}
	var errs []error
	for _, m := range msgs {
		ce := &ConfigError{File: path, Msg: strings.TrimPrefix(m, "yaml: ")}
		if sm := yamlLineRE.FindStringSubmatch(m); sm != nil {
			fmt.Sscan(sm[1], &ce.Line)
			ce.Msg = sm[2]
		}
		errs = append(errs, ce)
	}
	return errors.Join(errs...)
}

func sortErrors(errs []error) {
	line := func(e error) int {
		var ce *ConfigError
		if errors.As(e, &ce) {
			return ce.Line
		}
		return 0
	}
	sort.SliceStable(errs, func(i, j int) bool { return line(errs[i]) < line(errs[j]) })
}

// Resolve returns path relative to dir unless it is absolute.
func Resolve(dir, path string) string {
	if path == "" || filepath.IsAbs(path) {
		return path
	}
	return filepath.Join(dir, path)
}
