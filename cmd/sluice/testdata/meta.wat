;; meta: a test transform (docs/abi.md, by hand) that sets the metadata of
;; every record: key "k1", destination "topic-a", and the headers h=1, h=2
;; (one name twice, to check that they print in order and both). The value
;; is copied unchanged.
(module
  (memory (export "memory") 1)
  ;; key:bytes dest:bytes hcount:u32 (name:bytes value:bytes)*2, 41 bytes
  (data (i32.const 64)
    "\02\00\00\00k1"
    "\07\00\00\00topic-a"
    "\02\00\00\00"
    "\01\00\00\00h\01\00\00\001"
    "\01\00\00\00h\01\00\00\002")

  (func (export "sluice_abi_version") (result i32) (i32.const 1))

  ;; One input buffer at 1024, with room after it for the output: an output
  ;; record is its value plus 53 bytes, an input record at least its value
  ;; plus 16, so the output is under 4 times the input.
  (func (export "sluice_alloc") (param $size i32) (result i32)
    (local $pages i32)
    (local.set $pages
      (i32.shr_u
        (i32.add (i32.add (i32.const 1088) (i32.mul (local.get $size) (i32.const 5)))
                 (i32.const 65535))
        (i32.const 16)))
    (if (i32.gt_u (local.get $pages) (memory.size))
      (then
        (if (i32.eq (memory.grow (i32.sub (local.get $pages) (memory.size))) (i32.const -1))
          (then (return (i32.const 0))))))
    (i32.const 1024))

  (func (export "sluice_init") (param i32 i32) (result i64) (i64.const 0))

  (func $skip_bytes (param $q i32) (result i32)
    (i32.add (i32.add (local.get $q) (i32.const 4)) (i32.load (local.get $q))))

  (func (export "sluice_process") (param $ptr i32) (param $len i32) (result i64)
    (local $n i32) (local $i i32) (local $q i32) (local $v i32) (local $vlen i32)
    (local $h i32) (local $out i32) (local $o i32)
    (local.set $out (i32.add (local.get $ptr) (local.get $len)))
    (local.set $n (i32.load (local.get $ptr)))
    (i32.store (local.get $out) (local.get $n))
    (local.set $o (i32.add (local.get $out) (i32.const 4)))
    (local.set $q (i32.add (local.get $ptr) (i32.const 4)))
    (block $done
      (loop $records
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $v (local.get $q))                         ;; value:bytes
        (local.set $vlen (i32.add (i32.load (local.get $q)) (i32.const 4)))
        (local.set $q (call $skip_bytes (local.get $q)))       ;; value
        (local.set $q (call $skip_bytes (local.get $q)))       ;; key
        (local.set $q (call $skip_bytes (local.get $q)))       ;; dest
        (local.set $h (i32.load (local.get $q)))
        (local.set $q (i32.add (local.get $q) (i32.const 4)))
        (block $end
          (loop $headers
            (br_if $end (i32.eqz (local.get $h)))
            (local.set $q (call $skip_bytes (call $skip_bytes (local.get $q))))
            (local.set $h (i32.sub (local.get $h) (i32.const 1)))
            (br $headers)))
        (i32.store (local.get $o) (local.get $i))
        (i32.store offset=4 (local.get $o) (i32.const 0))
        (memory.copy (i32.add (local.get $o) (i32.const 8)) (local.get $v) (local.get $vlen))
        (local.set $o (i32.add (i32.add (local.get $o) (i32.const 8)) (local.get $vlen)))
        (memory.copy (local.get $o) (i32.const 64) (i32.const 41))
        (local.set $o (i32.add (local.get $o) (i32.const 41)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $records)))
    (i64.or
      (i64.shl (i64.extend_i32_u (local.get $out)) (i64.const 32))
      (i64.extend_i32_u (i32.sub (local.get $o) (local.get $out)))))
)
