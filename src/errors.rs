//! An error and its causes as one line, for the log and the CLI: the one place the chain
//! is written out. Depends on nothing, so every part may use it.

/// An error and each of its causes, `: `-separated.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}
