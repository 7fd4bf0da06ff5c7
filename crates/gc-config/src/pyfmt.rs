//! Python `str()`/`repr()` emulation for values printed by templates (ENDPOINT.md §3.5):
//! `None`, `True`/`False`, float spelling (`1.5e+20`, `1e-05`, `10.0`) and `repr` of lists,
//! dicts and strings.

/// Python's `repr(float)`: shortest round-trip digits, scientific notation when the decimal
/// exponent is below -4 or at least 16.
pub use gc_pytext::repr_float as float_repr;

/// Python's `repr(str)`; only C0 controls and DEL are escaped (as `\xNN`).
pub use gc_pytext::repr_str_ascii_controls as str_repr;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_like_python() {
        assert_eq!(float_repr(1.5e20), "1.5e+20");
        assert_eq!(float_repr(1e-5), "1e-05");
        assert_eq!(float_repr(0.0001), "0.0001");
        assert_eq!(float_repr(10.0), "10.0");
        assert_eq!(float_repr(1.5), "1.5");
        assert_eq!(float_repr(123456.789), "123456.789");
        assert_eq!(float_repr(1e16), "1e+16");
        assert_eq!(float_repr(1e15), "1000000000000000.0");
        assert_eq!(float_repr(-2.5e-7), "-2.5e-07");
        assert_eq!(float_repr(0.1), "0.1");
    }

    #[test]
    fn strings_like_python() {
        assert_eq!(str_repr("a"), "'a'");
        assert_eq!(str_repr("\"a\""), "'\"a\"'");
        assert_eq!(str_repr("it's"), "\"it's\"");
        assert_eq!(str_repr("a\nb"), "'a\\nb'");
    }
}
