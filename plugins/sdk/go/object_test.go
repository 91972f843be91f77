package sluice

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
)

func TestObjectGet(t *testing.T) {
	doc := ` { "device_id" : "d-1", "temp":21.5, "n": -3, "ok": true, "nil": null,
	"nested": {"temp": 99, "s": "}"}, "arr": [1, 2], "esc\"key": "v", "s": "a\"b\\c\u00e9" } `
	o := NewObject([]byte(doc))
	if !o.IsObject() || o.Len() != 9 {
		t.Fatalf("IsObject/Len: got %v %d, want true 9", o.IsObject(), o.Len())
	}
	if s, ok := o.GetString("device_id"); !ok || s != "d-1" {
		t.Errorf("GetString(device_id): got %q %v", s, ok)
	}
	if f, ok := o.GetFloat("temp"); !ok || f != 21.5 {
		t.Errorf("GetFloat(temp): got %v %v, want 21.5 (the top-level one)", f, ok)
	}
	if i, ok := o.GetInt("n"); !ok || i != -3 {
		t.Errorf("GetInt(n): got %v %v", i, ok)
	}
	if b, ok := o.GetBool("ok"); !ok || !b {
		t.Errorf("GetBool(ok): got %v %v", b, ok)
	}
	if k := o.Kind("nil"); k != KindNull {
		t.Errorf("Kind(nil): got %v", k)
	}
	if raw, ok := o.GetRaw("nested"); !ok || string(raw) != `{"temp": 99, "s": "}"}` {
		t.Errorf("GetRaw(nested): got %s %v", raw, ok)
	}
	if k := o.Kind("arr"); k != KindArray {
		t.Errorf("Kind(arr): got %v", k)
	}
	if s, ok := o.GetString(`esc"key`); !ok || s != "v" {
		t.Errorf(`GetString(esc"key): got %q %v`, s, ok)
	}
	if s, ok := o.GetString("s"); !ok || s != `a"b\cé` {
		t.Errorf("GetString(s): got %q %v", s, ok)
	}
	if _, ok := o.GetFloat("device_id"); ok {
		t.Error("GetFloat of a string: got ok")
	}
	if o.Has("missing") || o.Kind("missing") != KindMissing {
		t.Error("missing field found")
	}
}

func TestObjectNotObject(t *testing.T) {
	for _, doc := range []string{`[1,2]`, `"s"`, `{"a":1`, `{"a" 1}`, `{a:1}`, ``} {
		o := NewObject([]byte(doc))
		if o.IsObject() || o.Has("a") {
			t.Errorf("%s: IsObject or Has: got true", doc)
		}
		o.Set("a", Int(1))
		if o.Err() == nil || string(o.Bytes()) != doc {
			t.Errorf("%s: Set: got err %v and %s, want ErrNotObject and no change", doc, o.Err(), o.Bytes())
		}
	}
}

func TestObjectEdits(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		edit func(o *Object)
		want string
	}{
		{"add to empty", `{}`, func(o *Object) { o.Set("a", Int(1)) }, `{"a":1}`},
		{"add to empty with space", `{ }`, func(o *Object) { o.Set("a", Int(1)) }, `{"a":1 }`},
		{"add", `{"a":1}`, func(o *Object) { o.Set("b", String("x")) }, `{"a":1,"b":"x"}`},
		{"replace shorter", `{"a":"long value","b":2}`, func(o *Object) { o.Set("a", Int(1)) }, `{"a":1,"b":2}`},
		{"replace longer", `{"a":1,"b":2}`, func(o *Object) { o.Set("a", String("longer")) }, `{"a":"longer","b":2}`},
		{"delete first", `{"a":1, "b":2, "c":3}`, func(o *Object) { o.Delete("a") }, `{"b":2, "c":3}`},
		{"delete middle", `{"a":1, "b":2, "c":3}`, func(o *Object) { o.Delete("b") }, `{"a":1, "c":3}`},
		{"delete last", `{"a":1, "b":2, "c":3}`, func(o *Object) { o.Delete("c") }, `{"a":1, "b":2}`},
		{"delete only", `{ "a" : 1 }`, func(o *Object) { o.Delete("a") }, `{  }`},
		{"edits then reads", `{"a":1,"b":2}`, func(o *Object) {
			o.Set("c", Float(0.5))
			o.Delete("a")
			o.Set("b", Bool(false))
			if v, _ := o.GetFloat("c"); v != 0.5 {
				panic("c")
			}
		}, `{"b":false,"c":0.5}`},
		{"escaped name", `{}`, func(o *Object) { o.Set(`a"b`, Null()) }, `{"a\"b":null}`},
		{"raw aliasing itself", `{"a":{"x":1},"b":2}`, func(o *Object) {
			o.Set("b", Int(3)) // now owned
			raw, _ := o.GetRaw("a")
			o.SetRaw("c", raw)
		}, `{"a":{"x":1},"b":3,"c":{"x":1}}`},
		{"whole value", `{"a":1}`, func(o *Object) { o.SetBytes([]byte(`{"z":0}`)); o.Set("y", Int(1)) }, `{"z":0,"y":1}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := []byte(tt.doc)
			orig := string(in)
			o := NewObject(in)
			tt.edit(o)
			if got := string(o.Bytes()); got != tt.want {
				t.Fatalf("got %s, want %s", got, tt.want)
			}
			if string(in) != orig {
				t.Fatalf("the input was modified: %s", in)
			}
			if !json.Valid(o.Bytes()) {
				t.Fatalf("not valid JSON: %s", o.Bytes())
			}
		})
	}
}

// Random edits agree with the same edits on a decoded map.
func TestObjectEditsMatchModel(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	names := []string{"a", "b", "temp", "device_id", "x\"y", "é", "long_name_here", ""}
	var o Object // reused, like the SDK reuses its Record
	for iter := range 3000 {
		model := map[string]any{}
		for range r.IntN(5) {
			model[names[r.IntN(len(names))]] = float64(r.IntN(100))
		}
		doc, _ := json.Marshal(model)
		if r.IntN(2) == 0 {
			doc, _ = json.MarshalIndent(model, "", "  ")
		}
		o.Reset(doc)
		for range r.IntN(8) {
			name := names[r.IntN(len(names))]
			switch r.IntN(6) {
			case 5: // GetFloat too
				got, ok := o.GetFloat(name)
				want, isNum := model[name].(float64)
				if ok != isNum || ok && got != want {
					t.Fatalf("iteration %d: GetFloat(%q) = %v, %v; want %v, %v (doc %s)", iter, name, got, ok, want, isNum, o.Bytes())
				}
			case 4: // a read between edits sees them
				raw, ok := o.GetRaw(name)
				want, inModel := model[name]
				if ok != inModel {
					t.Fatalf("iteration %d: GetRaw(%q) found %v, want %v (doc %s)", iter, name, ok, inModel, o.Bytes())
				}
				var got any
				if ok {
					if err := json.Unmarshal(raw, &got); err != nil || !reflect.DeepEqual(got, want) {
						t.Fatalf("iteration %d: GetRaw(%q) = %s, want %v", iter, name, raw, want)
					}
				}
			case 0:
				v := fmt.Sprint("v\"", r.IntN(1000))
				o.Set(name, String(v))
				model[name] = v
			case 1:
				v := r.NormFloat64()
				o.Set(name, Float(v))
				model[name] = v
			case 2:
				o.Delete(name)
				delete(model, name)
			case 3:
				o.SetRaw(name, []byte(`[1,{"k":"v"}]`))
				model[name] = []any{1.0, map[string]any{"k": "v"}}
			}
		}
		// What Emit writes (before Bytes, which splices pending fields in)
		// is the same document.
		var emitted map[string]any
		if err := json.Unmarshal(emitValue(&o), &emitted); err != nil || !reflect.DeepEqual(emitted, model) {
			t.Fatalf("iteration %d: emitted %s (%v), want %v", iter, emitValue(&o), err, model)
		}
		var got map[string]any
		if err := json.Unmarshal(o.Bytes(), &got); err != nil {
			t.Fatalf("iteration %d: invalid JSON %s: %v", iter, o.Bytes(), err)
		}
		if !reflect.DeepEqual(got, model) {
			t.Fatalf("iteration %d: got %v, want %v (doc %s)", iter, got, model, o.Bytes())
		}
	}
}

// emitValue returns the value that Emit writes for a record whose value
// is o as it is now.
func emitValue(o *Object) []byte {
	r := Record{Object: *o}
	r.raw = encodeBatch(string(o.b))[4:]
	var o2 Output
	o2.emit(&r)
	out := o2.buf
	n := binary.LittleEndian.Uint32(out[8:])
	return out[12 : 12+n]
}
