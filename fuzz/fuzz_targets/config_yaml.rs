//! Fuzz loading `config.yaml` text (`gc_config`): the core (MEP) configuration, the rendered
//! user endpoint configuration, and the either-kind loader.
//!
//! * Never panics on arbitrary text; errors carry the source name.
//! * The three entry points agree: `load_config` picks the same kind that the typed loader
//!   accepts.
#![no_main]

use gc_config::{CoreEndpointConfig, EndpointConfig, LoadOptions, UserEndpointConfig, load_config};
use libfuzzer_sys::fuzz_target;

const SOURCE: &str = "/fuzz/config.yaml";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let options = LoadOptions { check_paths: false };
    let core = CoreEndpointConfig::from_yaml(text, SOURCE, options);
    let user = UserEndpointConfig::from_yaml(text, SOURCE);
    if let Ok(user) = &user {
        let _ = user.effective_idle_heartbeats_hard();
    }
    match load_config(text, SOURCE, options) {
        Ok(EndpointConfig::Core(c)) => {
            assert_eq!(Some(&*c), core.as_ref().ok(), "load_config and from_yaml disagree");
        }
        Ok(EndpointConfig::User(u)) => {
            assert_eq!(Some(&*u), user.as_ref().ok(), "load_config and from_yaml disagree");
        }
        Err(e) => assert_eq!(e.source_name, SOURCE),
    }
});
