//! Runs librdkafka's rdkafka_performance with this process's arguments.

use std::ffi::{CString, c_char, c_int};

// Keeps librdkafka (and the libraries it links) in the binary.
use rdkafka_sys as _;

unsafe extern "C" {
    fn rdkafka_performance_main(argc: c_int, argv: *mut *mut c_char) -> c_int;
}

fn main() {
    let args: Vec<CString> = std::env::args().map(|a| CString::new(a).expect("no NUL in arguments")).collect();
    let mut argv: Vec<*mut c_char> = args.iter().map(|a| a.as_ptr() as *mut c_char).collect();
    argv.push(std::ptr::null_mut());
    // SAFETY: argv is a NULL-terminated array of C strings that outlive the call.
    let code = unsafe { rdkafka_performance_main(args.len() as c_int, argv.as_mut_ptr()) };
    std::process::exit(code);
}
