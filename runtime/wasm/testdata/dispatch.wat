;; A function in the shape of Go's wasm code (runtime/wasm/jumps.go): a
;; dispatch loop whose jump table, indexed by local 0, picks the block of
;; code to run, and jumps written as `i32.const N  local.set 0  br $d`.
;; sum(0, x) returns 1 + 2 + ... + x; code 2 jumps back to code 1, the
;; other jumps go forward (three of them).
(module
  (memory (export "memory") 1)
  (func (export "sum") (param i32) (param $x i32) (result i32)
    (local $acc i32)
    loop $d
      block $b3
        block $b2
          block $b1
            block $b0
              local.get 0
              br_table $b0 $b1 $b2 $b3 $b0
            end
            ;; code 0: the entry
            i32.const 0
            local.set $acc
            i32.const 1
            local.set 0
            br $d
          end
          ;; code 1: the loop's head
          local.get $x
          i32.eqz
          if
            i32.const 3
            local.set 0
            br $d
          end
          i32.const 2
          local.set 0
          br $d
        end
        ;; code 2: the loop's body, then back to its head
        local.get $acc
        local.get $x
        i32.add
        local.set $acc
        local.get $x
        i32.const 1
        i32.sub
        local.set $x
        i32.const 1
        local.set 0
        br $d
      end
      ;; code 3
      local.get $acc
      return
    end
    unreachable)
  ;; The same shape, but the jump table names the loop itself: not Go's
  ;; dispatch nest, so nothing is rewritten.
  (func (export "other") (param i32) (result i32)
    loop $d
      block $b1
        block $b0
          local.get 0
          br_table $b0 $b1 $d
        end
        i32.const 1
        local.set 0
        br $d
      end
      i32.const 7
      return
    end
    unreachable))
