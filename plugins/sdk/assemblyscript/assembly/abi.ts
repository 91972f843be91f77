// The ABI v1 exports (docs/abi.md). A transform's entry file re-exports them:
//
//   export * from "../../sdk/assemblyscript/assembly/abi";
//
// Only the entry file's exports become the module's exports, which is why
// they live apart from the API in index.ts.
import { abiAlloc, abiInit, abiProcess } from "./index";

export function sluice_abi_version(): i32 {
  return 1;
}

export function sluice_alloc(size: i32): usize {
  return abiAlloc(size);
}

export function sluice_init(ptr: usize, len: i32): i64 {
  return abiInit(ptr, len);
}

export function sluice_process(ptr: usize, len: i32): i64 {
  return abiProcess(ptr, len);
}
