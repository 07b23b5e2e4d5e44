//! The core library reads Mach-O Go executables (the macOS face of lldb must
//! not be blocked): buildinfo and the pclntab from `__go_buildinfo` and
//! `__gopclntab`, checked on real darwin builds made by the real toolchain.
mod common;

use common::*;
use object::{Object, ObjectSymbol};
use std::process::Command;

#[test]
fn darwin_executables_give_buildinfo_and_function_names() {
    let go = root().join(".cache/go/v1.27.3/lib/python3.11/site-packages/go/bin/go");
    if !go.exists() {
        assert!(!require_generated(), "Go 1.27.3 toolchain missing");
        return;
    }
    let tmp = Scratch::new("macho");
    let dir = &tmp.0;
    std::fs::write(dir.join("go.mod"), "module machodemo\n\ngo 1.21\n").unwrap();
    std::fs::write(
        dir.join("main.go"),
        "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"hello from darwin\") }\n",
    )
    .unwrap();
    for arch in ["arm64", "amd64"] {
        let exe = dir.join(format!("hello-{arch}"));
        let st = Command::new(&go)
            .args(["build", "-o"])
            .arg(&exe)
            .arg(".")
            .current_dir(dir)
            .env("GOOS", "darwin")
            .env("GOARCH", arch)
            .env("CGO_ENABLED", "0")
            .env("GOTOOLCHAIN", "local")
            .env("GOFLAGS", "-mod=mod")
            .env("GOCACHE", root().join(".cache/gocache/darwin"))
            .status()
            .unwrap();
        assert!(st.success(), "go build for darwin/{arch}");
        let bin = cgocore::testing::Binary::open(&exe).unwrap();
        assert_eq!(bin.object().format(), object::BinaryFormat::MachO);
        let (_, bi) = bin.section(".go.buildinfo").expect("__go_buildinfo");
        let info = cgocore::testing::parse_buildinfo(bi, None).expect("buildinfo parses");
        assert_eq!(info.go_version, "go1.27.3", "darwin/{arch}");
        assert!(bin.section(".gopclntab").is_some(), "__gopclntab");
        let pcln = cgocore::testing::Pclntab::load(&bin, 0).unwrap();
        // Mach-O symbols carry a leading underscore.
        let obj = bin.object();
        let sym = obj
            .symbols()
            .find(|s| s.name() == Ok("_main.main"))
            .expect("_main.main symbol");
        let f = pcln.find(sym.address()).expect("main.main in the pclntab");
        assert_eq!(pcln.name(&f), "main.main", "darwin/{arch}");
    }
}
