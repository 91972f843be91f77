;; abi2: a module that speaks a future ABI version 2; Sluice (ABI v1) must
;; refuse it at load with a message saying so.
(module
  (memory (export "memory") 1)
  (func (export "sluice_abi_version") (result i32) (i32.const 2))
  (func (export "sluice_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "sluice_init") (param i32 i32) (result i64) (i64.const 0))
  (func (export "sluice_process") (param i32 i32) (result i64) (i64.const 0))
)
