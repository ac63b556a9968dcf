//! An error and its causes as one line, for the log and the CLI: the one place the chain
//! is written out. Depends on nothing, so every part may use it.

/// An error and each of its causes, `: `-separated. A cause whose words its error
/// already ends with (some libraries print their source in their own message) is said
/// once.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let words = c.to_string();
        if !text.ends_with(&words) {
            text.push_str(": ");
            text.push_str(&words);
        }
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot open the keypad")]
    struct Outer(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("IO error: {0}")]
    struct Echoing(#[source] std::io::Error);

    #[test]
    fn each_cause_is_said_once() {
        let e = Outer(std::io::Error::other("no such file"));
        assert_eq!(chain(&e), "cannot open the keypad: no such file");
        let e = Echoing(std::io::Error::other("refused"));
        assert_eq!(chain(&e), "IO error: refused");
    }
}
