//! `--duration` and the configuration's `window` are one syntax: whatever one accepts the other
//! accepts with the same value, and whatever one refuses the other refuses.

use std::time::Duration;

use clap::Parser as _;
use meshmark_agent::cli::{Cli, Command};
use meshmark_agent::config::parse_config;
use proptest::prelude::*;

/// What `profile --duration=TEXT` makes of `text`: the duration, or `None` if clap refused it.
fn from_flag(text: &str) -> Option<Duration> {
    let flag = format!("--duration={text}");
    match Cli::try_parse_from(["meshmark-agent", "profile", flag.as_str()]) {
        Ok(Cli {
            command: Command::Profile(args),
        }) => Some(args.duration.expect("--duration was given")),
        Ok(other) => panic!("parsed as another command: {other:?}"),
        Err(_) => None,
    }
}

/// What `window = "TEXT"` in a configuration file makes of `text`.
fn from_config(text: &str) -> Option<Duration> {
    parse_config(&format!("window = {text:?}\n"), "test.toml")
        .ok()
        .map(|config| config.window)
}

#[test]
fn documented_examples_agree() {
    for (text, want) in [
        ("1h", Some(Duration::from_secs(3600))),
        ("1m30s", Some(Duration::from_secs(90))),
        ("500ms", Some(Duration::from_millis(500))),
        ("10s", Some(Duration::from_secs(10))),
        ("1.5s", None),
        ("10", None),
        ("0s", None),
        ("25h", None),
    ] {
        assert_eq!(from_flag(text), want, "--duration={text}");
        assert_eq!(from_config(text), want, "window = {text:?}");
    }
}

proptest! {
    #[test]
    fn flag_and_config_accept_the_same_text(
        text in "[0-9]{0,3}(ms|s|m|h|d|us|\\.|-| )?[0-9]{0,2}(ms|s|m|h| )?",
    ) {
        prop_assert_eq!(from_flag(&text), from_config(&text), "{:?}", text);
    }
}
