;; passthrough: the Sluice transform ABI v1 (docs/abi.md) by hand, no SDK.
;;
;; Every input record comes out unchanged. Because an output entry is
;;   index:u32 status:u32 record
;; and a record is encoded the same way in the input batch and in the
;; output, the module copies each record's bytes as they are, after writing
;; the entry's index and status 0. It never looks inside the JSON.
;;
;; Build: wat2wasm passthrough.wat -o passthrough.wasm
(module
  ;; Optional import: sluice.log(level, ptr, len) writes to Sluice's log.
  ;; Unused here, shown for its signature.
  ;; (import "sluice" "log" (func $log (param i32 i32 i32)))

  ;; The guest's linear memory, read and written by the host. Page 0 holds
  ;; nothing; the input buffer starts at 1024 and the output follows it.
  (memory (export "memory") 1)

  ;; The handshake: this module speaks ABI version 1.
  (func (export "sluice_abi_version") (result i32)
    (i32.const 1))

  ;; sluice_alloc(size) -> ptr: room for the host to write `size` bytes.
  ;; There is one input buffer, at 1024, handed out again on every call
  ;; (the previous input is no longer needed then). Memory grows so that
  ;; the output of that input fits after it too: an entry adds 8 bytes to a
  ;; record of at least 16, so the output is at most 4 + 1.5 * size; the
  ;; module reserves 2 * size + 64. Returns 0 (out of memory) when memory
  ;; cannot grow.
  (func (export "sluice_alloc") (param $size i32) (result i32)
    (local $need i32)
    (local $pages i32)
    ;; need = 1024 + 3 * size + 64 bytes (input + output), in whole pages
    (local.set $need
      (i32.add (i32.const 1088) (i32.mul (local.get $size) (i32.const 3))))
    (local.set $pages
      (i32.shr_u (i32.add (local.get $need) (i32.const 65535)) (i32.const 16)))
    (if (i32.gt_u (local.get $pages) (memory.size))
      (then
        (if (i32.eq (memory.grow (i32.sub (local.get $pages) (memory.size)))
                    (i32.const -1))
          (then (return (i32.const 0))))))
    (i32.const 1024))

  ;; sluice_init(ptr, len) -> 0: the config is not needed. An error would
  ;; be returned as a packed (ptr << 32 | len) pointer to a UTF-8 message.
  (func (export "sluice_init") (param $ptr i32) (param $len i32) (result i64)
    (i64.const 0))

  ;; $skip_bytes(q) -> the position after the `bytes` (u32 length + data) at q.
  (func $skip_bytes (param $q i32) (result i32)
    (i32.add (i32.add (local.get $q) (i32.const 4))
             (i32.load (local.get $q))))

  ;; sluice_process(ptr, len) -> packed (out << 32 | out_len).
  ;;   batch  := count:u32 record*count
  ;;   record := value:bytes key:bytes dest:bytes hcount:u32 (name:bytes value:bytes)*hcount
  ;;   output := count:u32 (index:u32 status:u32 record)*count
  ;; All integers are little-endian, as wasm's i32.load/i32.store are. A
  ;; malformed batch makes a load run past memory: a trap, which the host
  ;; reports.
  (func (export "sluice_process") (param $ptr i32) (param $len i32) (result i64)
    (local $n i32)      ;; records in the batch
    (local $i i32)      ;; the current record
    (local $q i32)      ;; read position in the input
    (local $start i32)  ;; where the current record starts
    (local $h i32)      ;; headers left to skip
    (local $out i32)    ;; the output buffer
    (local $o i32)      ;; write position in the output
    (local.set $out (i32.add (local.get $ptr) (local.get $len)))
    (local.set $n (i32.load (local.get $ptr)))
    (i32.store (local.get $out) (local.get $n))  ;; one entry per record
    (local.set $o (i32.add (local.get $out) (i32.const 4)))
    (local.set $q (i32.add (local.get $ptr) (i32.const 4)))
    (block $done
      (loop $records
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        ;; find the end of record i: value, key, dest, then the headers
        (local.set $start (local.get $q))
        (local.set $q (call $skip_bytes (local.get $q)))   ;; value
        (local.set $q (call $skip_bytes (local.get $q)))   ;; key
        (local.set $q (call $skip_bytes (local.get $q)))   ;; dest
        (local.set $h (i32.load (local.get $q)))           ;; hcount
        (local.set $q (i32.add (local.get $q) (i32.const 4)))
        (block $no_more_headers
          (loop $headers
            (br_if $no_more_headers (i32.eqz (local.get $h)))
            (local.set $q (call $skip_bytes (call $skip_bytes (local.get $q))))
            (local.set $h (i32.sub (local.get $h) (i32.const 1)))
            (br $headers)))
        ;; the entry: index i, status 0 (a record), then the record itself
        (i32.store (local.get $o) (local.get $i))
        (i32.store offset=4 (local.get $o) (i32.const 0))
        (memory.copy
          (i32.add (local.get $o) (i32.const 8))
          (local.get $start)
          (i32.sub (local.get $q) (local.get $start)))
        (local.set $o
          (i32.add (i32.add (local.get $o) (i32.const 8))
                   (i32.sub (local.get $q) (local.get $start))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $records)))
    ;; pack the output's location: pointer in the high 32 bits, length low
    (i64.or
      (i64.shl (i64.extend_i32_u (local.get $out)) (i64.const 32))
      (i64.extend_i32_u (i32.sub (local.get $o) (local.get $out)))))
)
