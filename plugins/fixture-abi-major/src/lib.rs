//! Test fixture: a plugin whose descriptor claims ABI major `ABI_MAJOR + 1`.
//!
//! A host must refuse it after reading the header and before touching anything else, which is
//! why every function pointer is null: a host that read past the header would fail loudly.

use capture_connector_api::abi::{ABI_MAJOR, ConnectorDescriptor, DescriptorHeader, MAGIC};

static DESCRIPTOR: ConnectorDescriptor = ConnectorDescriptor {
    header: DescriptorHeader {
        magic: MAGIC,
        struct_size: std::mem::size_of::<ConnectorDescriptor>() as u32,
        abi_major: ABI_MAJOR + 1,
        abi_minor: 0,
    },
    manifest: None,
    build_capture: None,
    parse_capture: None,
    free_buffer: None,
    build_status: None,
    parse_status: None,
    build_capture_with: None,
    parse_capture_with: None,
    free_context: None,
    build_capture_struct: None,
    parse_capture_struct: None,
    free_output: None,
};

/// The entry point, as the ABI names it.
#[unsafe(no_mangle)]
pub extern "C" fn capture_connector_entry() -> *const ConnectorDescriptor {
    &DESCRIPTOR
}
