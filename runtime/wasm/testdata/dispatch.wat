;; A function in the shape of Go's wasm code (runtime/wasm/jumps.go): a
;; dispatch loop whose jump table, indexed by local 0, picks the block of
;; code to run, and jumps written as `i32.const N  local.set 0  br $d`.
;; sum(0, x) returns 1 + 2 + ... + x; code 2 jumps back to code 1, the
;; other jumps go forward (three of them). mid jumps into the middle of
;; its loop; nested has a loop in a loop; other is not the shape.
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
    unreachable)
  ;; mid(0, x): x <= 100 runs the loop (codes 1 and 2) from its head: acc =
  ;; x + x(x+1)/2; x > 100 starts at 1000 and jumps to code 2, the middle of
  ;; the loop: acc = 1000 + x(x+1)/2 + x-1.
  (func (export "mid") (param i32) (param $x i32) (result i32)
    (local $acc i32)
    loop $d
      block $b3
        block $b2
          block $b1
            block $b0
              local.get 0
              br_table $b0 $b1 $b2 $b3 $b0
            end
            ;; code 0
            local.get $x
            i32.const 100
            i32.gt_u
            if
              i32.const 1000
              local.set $acc
              i32.const 2
              local.set 0
              br $d
            end
          end
          ;; code 1: the loop's head
          local.get $acc
          i32.const 1
          i32.add
          local.set $acc
        end
        ;; code 2
        local.get $acc
        local.get $x
        i32.add
        local.set $acc
        local.get $x
        i32.const 1
        i32.sub
        local.tee $x
        if
          i32.const 1
          local.set 0
          br $d
        end
      end
      ;; code 3
      local.get $acc
      return
    end
    unreachable)
  ;; nested(0, a, b) counts a*b in two loops: the inner one (codes 2 and 3)
  ;; gets a wasm loop of its own; the outer one's jump back (code 4 to code
  ;; 1) still goes around the dispatch loop.
  (func (export "nested") (param i32) (param $a i32) (param $b i32) (result i32)
    (local $i i32) (local $j i32) (local $acc i32)
    loop $d
      block $b5
        block $b4
          block $b3
            block $b2
              block $b1
                block $b0
                  local.get 0
                  br_table $b0 $b1 $b2 $b3 $b4 $b5 $b0
                end
                ;; code 0
                i32.const 0
                local.set $i
              end
              ;; code 1: the outer loop's head
              local.get $i
              local.get $a
              i32.ge_u
              if
                i32.const 5
                local.set 0
                br $d
              end
              i32.const 0
              local.set $j
            end
            ;; code 2: the inner loop's head
            local.get $j
            local.get $b
            i32.ge_u
            if
              i32.const 4
              local.set 0
              br $d
            end
          end
          ;; code 3
          local.get $j
          i32.const 1
          i32.add
          local.set $j
          local.get $acc
          i32.const 1
          i32.add
          local.set $acc
          i32.const 2
          local.set 0
          br $d
        end
        ;; code 4
        local.get $i
        i32.const 1
        i32.add
        local.set $i
        i32.const 1
        local.set 0
        br $d
      end
      ;; code 5
      local.get $acc
      return
    end
    unreachable)
  ;; loose(0, _) jumps from code 0 to code 2, but with a nop between setting
  ;; local 0 and the branch: not Go's way, so every entry of its jump table
  ;; stays (loose(1, _) runs code 1).
  (func (export "loose") (param i32) (param i32) (result i32)
    loop $d
      block $b2
        block $b1
          block $b0
            local.get 0
            br_table $b0 $b1 $b2 $b0
          end
          i32.const 2
          local.set 0
          nop
          br $d
        end
        i32.const 11
        return
      end
      i32.const 22
      return
    end
    unreachable))
