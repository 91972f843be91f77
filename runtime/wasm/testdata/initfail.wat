;; sluice_init rejects every config.
(module
  (memory (export "memory") 1)
  (data (i32.const 2048) "bad config: want a field")
  (func (export "sluice_abi_version") (result i32) (i32.const 1))
  (func (export "sluice_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "sluice_init") (param i32 i32) (result i64)
    (i64.or (i64.shl (i64.const 2048) (i64.const 32)) (i64.const 24)))
  (func (export "sluice_process") (param i32 i32) (result i64) (i64.const 0)))
