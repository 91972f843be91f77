;; A lean identity written against the raw ABI: every record comes back as
;; it went in, copied whole. The benchmarks use it to measure the ABI's own
;; cost, apart from any language runtime.
(module
  (memory (export "memory") 2)
  (global $out (mut i32) (i32.const 0))
  (func (export "sluice_abi_version") (result i32) (i32.const 1))
  ;; input at 64 KiB, output after it (room for 2x the input)
  (func (export "sluice_alloc") (param $size i32) (result i32)
    (local $need i32)
    (local.set $need (i32.add (i32.const 65600) (i32.mul (local.get $size) (i32.const 3))))
    (block $ok
      (loop $grow
        (br_if $ok (i32.le_u (local.get $need) (i32.mul (memory.size) (i32.const 65536))))
        (if (i32.eq (memory.grow (i32.const 1)) (i32.const -1)) (then (return (i32.const 0))))
        (br $grow)))
    (global.set $out (i32.add (i32.const 65536) (local.get $size)))
    (i32.const 65536))
  (func (export "sluice_init") (param i32 i32) (result i64) (i64.const 0))
  (func (export "sluice_process") (param $ptr i32) (param $len i32) (result i64)
    (local $count i32) (local $i i32) (local $p i32) (local $start i32) (local $hc i32) (local $o i32) (local $q i32) (local $n i32)
    (local.set $count (i32.load (local.get $ptr)))
    (local.set $p (i32.add (local.get $ptr) (i32.const 4)))
    (local.set $o (global.get $out))
    (local.set $q (i32.add (local.get $o) (i32.const 4)))
    (block $end
      (loop $each
        (br_if $end (i32.ge_u (local.get $i) (local.get $count)))
        (local.set $start (local.get $p))
        ;; value, key, dest
        (local.set $p (i32.add (i32.add (local.get $p) (i32.const 4)) (i32.load (local.get $p))))
        (local.set $p (i32.add (i32.add (local.get $p) (i32.const 4)) (i32.load (local.get $p))))
        (local.set $p (i32.add (i32.add (local.get $p) (i32.const 4)) (i32.load (local.get $p))))
        ;; headers
        (local.set $hc (i32.load (local.get $p)))
        (local.set $p (i32.add (local.get $p) (i32.const 4)))
        (block $hdone
          (loop $h
            (br_if $hdone (i32.eqz (local.get $hc)))
            (local.set $p (i32.add (i32.add (local.get $p) (i32.const 4)) (i32.load (local.get $p))))
            (local.set $p (i32.add (i32.add (local.get $p) (i32.const 4)) (i32.load (local.get $p))))
            (local.set $hc (i32.sub (local.get $hc) (i32.const 1)))
            (br $h)))
        ;; entry: index, status 0, the record
        (i32.store (local.get $q) (local.get $i))
        (i32.store offset=4 (local.get $q) (i32.const 0))
        (memory.copy (i32.add (local.get $q) (i32.const 8)) (local.get $start) (i32.sub (local.get $p) (local.get $start)))
        (local.set $q (i32.add (local.get $q) (i32.add (i32.const 8) (i32.sub (local.get $p) (local.get $start)))))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $each)))
    (i32.store (local.get $o) (local.get $n))
    (i64.or (i64.shl (i64.extend_i32_u (local.get $o)) (i64.const 32))
            (i64.extend_i32_u (i32.sub (local.get $q) (local.get $o))))))
