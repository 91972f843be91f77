;; A raw ABI v1 guest with no SDK: it returns every record unchanged, except
;; records whose value starts with one of these, which misbehave on purpose:
;;
;;   {"poison":true     traps (unreachable)
;;   {"loop":true       loops forever
;;   {"bomb":true       grows memory until it cannot, then traps
;;   {"fail":true       fails the record with an error entry
;;   {"drop":true       drops the record (no entry)
;;   {"bad_index":true  writes an entry whose index is out of range
;;   {"bad_status":true writes an entry with status 7
;;   {"bad_json":true   writes a record whose value is not JSON
;;   {"bad_len":true    writes a value length past the end of the output
;;
;; Layout: the input batch at 64 KiB, the output right after it.
(module
  (import "sluice" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 2)

  (data (i32.const 256) "{\"poison\":true")
  (data (i32.const 288) "{\"loop\":true")
  (data (i32.const 320) "{\"bomb\":true")
  (data (i32.const 352) "{\"fail\":true")
  (data (i32.const 384) "{\"bad_index\":true")
  (data (i32.const 416) "{\"bad_status\":true")
  (data (i32.const 448) "{\"bad_json\":true")
  (data (i32.const 480) "{\"bad_len\":true")
  (data (i32.const 512) "{\"drop\":true")
  (data (i32.const 544) "failed on purpose")
  (data (i32.const 576) "{nope")
  (data (i32.const 608) "hostile guest ready")

  (global $out (mut i32) (i32.const 0))

  (func (export "sluice_abi_version") (result i32) (i32.const 1))

  ;; The input goes at 64 KiB; the output after it, with room for 3x the input.
  (func (export "sluice_alloc") (param $size i32) (result i32)
    (local $need i32)
    (local.set $need (i32.add (i32.const 65600) (i32.mul (local.get $size) (i32.const 4))))
    (block $ok
      (loop $grow
        (br_if $ok (i32.le_u (local.get $need) (i32.mul (memory.size) (i32.const 65536))))
        (if (i32.eq (memory.grow (i32.const 1)) (i32.const -1)) (then (return (i32.const 0))))
        (br $grow)))
    (global.set $out (i32.add (i32.const 65536) (local.get $size)))
    (i32.const 65536))

  (func (export "sluice_init") (param $ptr i32) (param $len i32) (result i64)
    (call $log (i32.const 1) (i32.const 608) (i32.const 19))
    (i64.const 0))

  ;; $prefix reports whether the len bytes at p start with the slen bytes at s.
  (func $prefix (param $p i32) (param $len i32) (param $s i32) (param $slen i32) (result i32)
    (local $i i32)
    (if (i32.lt_u (local.get $len) (local.get $slen)) (then (return (i32.const 0))))
    (block $done
      (loop $cmp
        (br_if $done (i32.ge_u (local.get $i) (local.get $slen)))
        (if (i32.ne (i32.load8_u (i32.add (local.get $p) (local.get $i)))
                    (i32.load8_u (i32.add (local.get $s) (local.get $i))))
          (then (return (i32.const 0))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $cmp)))
    (i32.const 1))

  (func (export "sluice_process") (param $ptr i32) (param $len i32) (result i64)
    (local $count i32) (local $i i32) (local $p i32) (local $start i32)
    (local $vptr i32) (local $vlen i32) (local $hc i32) (local $o i32) (local $q i32) (local $n i32)
    (local.set $count (i32.load (local.get $ptr)))
    (local.set $p (i32.add (local.get $ptr) (i32.const 4)))
    (local.set $o (global.get $out))
    (local.set $q (i32.add (local.get $o) (i32.const 4)))
    (block $end
      (loop $each
        (br_if $end (i32.ge_u (local.get $i) (local.get $count)))
        (local.set $start (local.get $p))
        ;; value
        (local.set $vlen (i32.load (local.get $p)))
        (local.set $vptr (i32.add (local.get $p) (i32.const 4)))
        (local.set $p (i32.add (local.get $vptr) (local.get $vlen)))
        ;; key, dest
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

        (if (call $prefix (local.get $vptr) (local.get $vlen) (i32.const 256) (i32.const 14))
          (then unreachable))
        (if (call $prefix (local.get $vptr) (local.get $vlen) (i32.const 288) (i32.const 12))
          (then (loop $forever (br $forever))))
        (if (call $prefix (local.get $vptr) (local.get $vlen) (i32.const 320) (i32.const 12))
          (then
            (loop $more
              (br_if $more (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
            unreachable))

        (block $next
          (if (call $prefix (local.get $vptr) (local.get $vlen) (i32.const 512) (i32.const 12))
            (then (br $next)))
          (i32.store (local.get $q) (local.get $i))
          (if (call $prefix (local.get $vptr) (local.get $vlen) (i32.const 352) (i32.const 12))
            (then
              (i32.store offset=4 (local.get $q) (i32.const 1))
              (i32.store offset=8 (local.get $q) (i32.const 17))
              (memory.copy (i32.add (local.get $q) (i32.const 12)) (i32.const 544) (i32.const 17))
              (local.set $q (i32.add (local.get $q) (i32.const 29)))
              (local.set $n (i32.add (local.get $n) (i32.const 1)))
              (br $next)))
          (if (call $prefix (local.get $vptr) (local.get $vlen) (i32.const 384) (i32.const 17))
            (then (i32.store (local.get $q) (i32.add (local.get $count) (i32.const 5)))))
          (i32.store offset=4 (local.get $q) (i32.const 0))
          (if (call $prefix (local.get $vptr) (local.get $vlen) (i32.const 416) (i32.const 18))
            (then (i32.store offset=4 (local.get $q) (i32.const 7))))
          (if (call $prefix (local.get $vptr) (local.get $vlen) (i32.const 448) (i32.const 16))
            (then
              ;; value "{nope", empty key and dest, no headers
              (i32.store offset=8 (local.get $q) (i32.const 5))
              (memory.copy (i32.add (local.get $q) (i32.const 12)) (i32.const 576) (i32.const 5))
              (i32.store offset=17 (local.get $q) (i32.const 0))
              (i32.store offset=21 (local.get $q) (i32.const 0))
              (i32.store offset=25 (local.get $q) (i32.const 0))
              (local.set $q (i32.add (local.get $q) (i32.const 29)))
              (local.set $n (i32.add (local.get $n) (i32.const 1)))
              (br $next)))
          (memory.copy (i32.add (local.get $q) (i32.const 8)) (local.get $start)
                       (i32.sub (local.get $p) (local.get $start)))
          (if (call $prefix (local.get $vptr) (local.get $vlen) (i32.const 480) (i32.const 15))
            (then (i32.store offset=8 (local.get $q) (i32.const 0x7fffffff))))
          (local.set $q (i32.add (local.get $q) (i32.add (i32.const 8) (i32.sub (local.get $p) (local.get $start)))))
          (local.set $n (i32.add (local.get $n) (i32.const 1))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $each)))
    (i32.store (local.get $o) (local.get $n))
    (i64.or (i64.shl (i64.extend_i32_u (local.get $o)) (i64.const 32))
            (i64.extend_i32_u (i32.sub (local.get $q) (local.get $o))))))
