//! Compiles librdkafka's examples/rdkafka_performance.c against the librdkafka
//! that rdkafka-sys just built (it exports its source tree as DEP_RDKAFKA_ROOT).

fn main() {
    let root = std::env::var("DEP_RDKAFKA_ROOT").expect("rdkafka-sys exports its source root");
    cc::Build::new()
        .file(format!("{root}/examples/rdkafka_performance.c"))
        .include(format!("{root}/src"))
        .define("main", "rdkafka_performance_main")
        .warnings(false)
        .compile("rdkafka_performance");
    println!("cargo:rerun-if-changed=build.rs");
}
