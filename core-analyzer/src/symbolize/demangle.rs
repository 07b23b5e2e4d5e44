//! Readable names for C++ and Rust symbols; anything else passes through.

/// Demangle `name` if it is an Itanium C++ (`_Z…`) or Rust (`_R…`, legacy
/// `_ZN…17h<hash>E`) symbol. Rust is tried first: legacy Rust names are valid
/// C++ manglings too, and rustc-demangle drops the hash.
pub fn demangle(name: &str) -> String {
    if let Ok(d) = rustc_demangle::try_demangle(name) {
        return format!("{d:#}");
    }
    if name.starts_with("_Z") {
        if let Ok(sym) = cpp_demangle::Symbol::new(name.as_bytes()) {
            if let Ok(s) = sym.demangle() {
                return s;
            }
        }
    }
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::demangle;

    #[test]
    fn cpp_rust_and_c() {
        assert_eq!(demangle("_ZN3foo3barEv"), "foo::bar()");
        assert_eq!(
            demangle("_ZN4core3ptr13drop_in_place17h0123456789abcdefE"),
            "core::ptr::drop_in_place"
        );
        assert_eq!(demangle("pthread_mutex_lock"), "pthread_mutex_lock");
        assert_eq!(demangle("_Zbroken"), "_Zbroken");
    }
}
