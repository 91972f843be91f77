;; sluice_process recurses without end, with no loop: a stack overflow trap.
(module
  (memory (export "memory") 1)
  (func (export "sluice_abi_version") (result i32) (i32.const 1))
  (func (export "sluice_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "sluice_init") (param i32 i32) (result i64) (i64.const 0))
  (func $r (param i32) (result i32) (call $r (i32.add (local.get 0) (i32.const 1))))
  (func (export "sluice_process") (param i32 i32) (result i64)
    (i64.extend_i32_u (call $r (i32.const 0)))))
