//! Compiles `src/prelude.lua` (the sandbox's own code) to Lua bytecode with debug information,
//! into `$OUT_DIR/prelude.luac`, with the vendored Lua 5.4 mlua links (the same `mlua-sys`).
//! Loading it is several times cheaper than parsing the text, which was about three quarters
//! of building a sandbox state (and so of loading a rule set). Rule files are never compiled
//! here: they stay source text, and bytecode rule files are refused.

use std::ffi::{c_int, c_void};

use mlua_sys as ffi;

/// `lua_Writer` appending to the `Vec<u8>` `ud` points at.
///
/// # Safety
/// `ud` is a `*mut Vec<u8>`; `p` points at `sz` readable bytes.
unsafe extern "C-unwind" fn writer(
    _: *mut ffi::lua_State,
    p: *const c_void,
    sz: usize,
    ud: *mut c_void,
) -> c_int {
    // SAFETY: the contract above (lua_dump passes our `ud` and its own buffer).
    unsafe {
        let out = &mut *ud.cast::<Vec<u8>>();
        out.extend_from_slice(std::slice::from_raw_parts(p.cast::<u8>(), sz));
    }
    0
}

fn main() {
    println!("cargo::rerun-if-changed=src/prelude.lua");
    let text = std::fs::read("src/prelude.lua").expect("read src/prelude.lua");
    let mut out: Vec<u8> = Vec::new();
    // SAFETY: a fresh state, used and closed here; the buffer and name outlive the calls.
    let status = unsafe {
        let l = ffi::luaL_newstate();
        assert!(!l.is_null(), "cannot create a Lua state");
        let status = ffi::luaL_loadbufferx(
            l,
            text.as_ptr().cast(),
            text.len(),
            c"=capture-rules prelude".as_ptr(),
            c"t".as_ptr(),
        );
        if status == ffi::LUA_OK {
            ffi::lua_dump(l, writer, (&raw mut out).cast::<c_void>(), 0);
        }
        ffi::lua_close(l);
        status
    };
    assert_eq!(status, ffi::LUA_OK, "src/prelude.lua does not compile");
    let dir = std::env::var_os("OUT_DIR").expect("OUT_DIR");
    std::fs::write(std::path::Path::new(&dir).join("prelude.luac"), out).expect("write prelude.luac");
}
