//! The C ABI: the entry symbol, the descriptor and the buffers. See the crate docs for the rules.

use std::ffi::{c_int, c_void};

/// Major ABI version. A host loads only plugins with the same major.
pub const ABI_MAJOR: u16 = 1;
/// Minor ABI version. Minors only append fields to [`ConnectorDescriptor`].
pub const ABI_MINOR: u16 = 2;
/// `"CAPT"` in ASCII, the first field of every descriptor: tells a descriptor from garbage.
pub const MAGIC: u32 = 0x4341_5054;
/// Name of the function every plugin exports (NUL-terminated for `dlsym`).
pub const ENTRY_SYMBOL: &[u8] = b"capture_connector_entry\0";

/// The call succeeded; the out buffer holds the result JSON.
pub const STATUS_OK: c_int = 0;
/// The connector refused the call; the out buffer holds `{"code": ..., "message": ...}`.
pub const STATUS_ERROR: c_int = 1;
/// The connector panicked; the out buffer holds the panic message as UTF-8 text.
pub const STATUS_PANIC: c_int = 2;

/// The plugin's entry function: returns a pointer to a descriptor that lives as long as the
/// library is loaded (a `static`). Never null for a well-formed plugin.
pub type EntryFn = unsafe extern "C" fn() -> *const ConnectorDescriptor;

/// A byte buffer allocated by the plugin and handed to the host. The host reads `len` bytes at
/// `ptr` and gives the buffer back, unchanged, to the plugin's `free_buffer`.
#[repr(C)]
#[derive(Debug)]
pub struct Buffer {
    /// Start of the bytes; null for an empty buffer.
    pub ptr: *mut u8,
    /// Number of bytes.
    pub len: usize,
    /// Allocation capacity, for the plugin's own bookkeeping.
    pub cap: usize,
}

impl Buffer {
    /// An empty buffer (null pointer): what the host passes for the plugin to fill.
    pub const fn empty() -> Buffer {
        Buffer { ptr: std::ptr::null_mut(), len: 0, cap: 0 }
    }
}

/// The fixed head of every descriptor, whatever its minor version: read first, checked first.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct DescriptorHeader {
    /// Always [`MAGIC`].
    pub magic: u32,
    /// `size_of::<ConnectorDescriptor>()` as the plugin was built: the host reads no field past it.
    pub struct_size: u32,
    /// The plugin's [`ABI_MAJOR`].
    pub abi_major: u16,
    /// The plugin's [`ABI_MINOR`].
    pub abi_minor: u16,
}

/// Writes the plugin's manifest JSON into `out`.
pub type ManifestFn = unsafe extern "C" fn(out: *mut Buffer) -> c_int;
/// Takes a JSON message (`len` bytes at `input`) and writes a JSON answer into `out`.
pub type CallFn = unsafe extern "C" fn(input: *const u8, len: usize, out: *mut Buffer) -> c_int;
/// Frees a buffer the plugin wrote.
pub type FreeFn = unsafe extern "C" fn(buf: Buffer);
/// 1.2: like [`CallFn`] for `build_capture`, and on [`STATUS_OK`] also writes into `*context` an
/// opaque value of the plugin's own (a pointer to what it keeps of the call; null is allowed).
pub type BuildWithContextFn =
    unsafe extern "C" fn(input: *const u8, len: usize, out: *mut Buffer, context: *mut *mut c_void) -> c_int;
/// 1.2: reads the answer (an [`crate::HttpResponse`], JSON) to the request built with `context`,
/// and writes a [`crate::CaptureResult`]. Consumes `context`, whatever the status returned.
pub type ParseWithContextFn =
    unsafe extern "C" fn(context: *mut c_void, input: *const u8, len: usize, out: *mut Buffer) -> c_int;
/// 1.2: releases a context that no parse consumed (the request was not sent, or no answer came).
pub type FreeContextFn = unsafe extern "C" fn(context: *mut c_void);

/// The versioned descriptor (ABI 1.2). Fields are only ever appended, in later minors:
/// 1.0 ends with `free_buffer`; 1.1 appends `build_status` and `parse_status`; 1.2 appends
/// `build_capture_with`, `parse_capture_with` and `free_context` (all three or none).
#[repr(C)]
#[derive(Debug)]
pub struct ConnectorDescriptor {
    /// Magic, size and version.
    pub header: DescriptorHeader,
    /// Manifest: [`crate::Manifest`] as JSON.
    pub manifest: Option<ManifestFn>,
    /// [`crate::CaptureCall`] in, [`crate::HttpRequest`] out.
    pub build_capture: Option<CallFn>,
    /// [`crate::ParseCall`] in, [`crate::CaptureResult`] out.
    pub parse_capture: Option<CallFn>,
    /// Frees every buffer the other functions wrote.
    pub free_buffer: Option<FreeFn>,
    /// 1.1: [`crate::StatusCall`] in, [`crate::HttpRequest`] out (null: no status query).
    pub build_status: Option<CallFn>,
    /// 1.1: [`crate::StatusParseCall`] in, [`crate::CaptureResult`] out (null: no status query).
    pub parse_status: Option<CallFn>,
    /// 1.2: [`crate::CaptureCall`] in, [`crate::HttpRequest`] out, and a context kept for the
    /// parse (null: the host uses `build_capture` and `parse_capture`).
    pub build_capture_with: Option<BuildWithContextFn>,
    /// 1.2: the context and [`crate::HttpResponse`] in, [`crate::CaptureResult`] out: the call
    /// is not sent again.
    pub parse_capture_with: Option<ParseWithContextFn>,
    /// 1.2: releases a context no parse consumed.
    pub free_context: Option<FreeContextFn>,
}

/// Size of the 1.0 descriptor (up to `free_buffer`): the smallest a host of this major accepts.
pub const DESCRIPTOR_SIZE_V1_0: usize = std::mem::offset_of!(ConnectorDescriptor, build_status);
/// Size of the 1.1 descriptor (up to `parse_status`).
pub const DESCRIPTOR_SIZE_V1_1: usize = std::mem::offset_of!(ConnectorDescriptor, build_capture_with);
/// Size of the 1.2 descriptor.
pub const DESCRIPTOR_SIZE_V1_2: usize = std::mem::size_of::<ConnectorDescriptor>();

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    #[test]
    fn the_header_is_twelve_bytes_and_the_pointers_follow_it() {
        assert_eq!(size_of::<DescriptorHeader>(), 12);
        assert_eq!(offset_of!(DescriptorHeader, struct_size), 4);
        assert_eq!(offset_of!(DescriptorHeader, abi_major), 8);
        assert_eq!(offset_of!(DescriptorHeader, abi_minor), 10);
        let ptr = size_of::<usize>();
        let first = if ptr == 8 { 16 } else { 12 };
        assert_eq!(offset_of!(ConnectorDescriptor, manifest), first);
        assert_eq!(DESCRIPTOR_SIZE_V1_0, first + 4 * ptr);
        assert_eq!(DESCRIPTOR_SIZE_V1_1, first + 6 * ptr);
        assert_eq!(DESCRIPTOR_SIZE_V1_2, first + 9 * ptr);
        assert_eq!(size_of::<Buffer>(), 3 * ptr);
        // Nullable function pointers are plain pointers (the niche of `Option<fn>`).
        assert_eq!(size_of::<Option<CallFn>>(), ptr);
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn sizes_on_64_bit_targets() {
        assert_eq!((DESCRIPTOR_SIZE_V1_0, DESCRIPTOR_SIZE_V1_1, DESCRIPTOR_SIZE_V1_2), (48, 64, 88));
    }

    #[test]
    fn the_magic_spells_capt() {
        assert_eq!(MAGIC.to_be_bytes(), *b"CAPT");
        assert_eq!(ENTRY_SYMBOL, b"capture_connector_entry\0");
    }
}
