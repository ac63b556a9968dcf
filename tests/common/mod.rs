//! Helpers shared by the integration tests.
#![allow(dead_code, unused_imports)]

pub(crate) use intercom_test_support::audio;
pub(crate) use intercom_test_support::files::{
    collect_lines, file_writes, log_shows_number, qr_in,
};
pub(crate) use intercom_test_support::netns::in_private_network;

/// A whole box running in this process (`runtime::run_with_input`): keys go in, reports
/// come out, and `stop` ends it cleanly.
pub(crate) struct InProcessBox {
    /// Key presses (and text lines) for the box.
    pub keys: tokio::sync::mpsc::Sender<intercom::hw::Input>,
    /// What the box did.
    pub reports: tokio::sync::mpsc::UnboundedReceiver<intercom::runtime::Report>,
    /// Send (or drop) to stop the box.
    pub stop: tokio::sync::oneshot::Sender<()>,
    /// The box's task: its summary once stopped.
    pub handle:
        tokio::task::JoinHandle<Result<intercom::runtime::RunSummary, intercom::runtime::RunError>>,
}

/// Options for a box on `board` with `config`: no display file, no terminal, silent
/// audio, no keys at start.
pub(crate) fn sim_options(
    config: intercom::config::Config,
    board: intercom::board::Board,
) -> intercom::runtime::RunOptions {
    intercom::runtime::RunOptions {
        config,
        board,
        keys: Default::default(),
        display_png: None,
        terminal: false,
        audio_in: None,
        audio_in_clip: None,
        audio_out: None,
        echo_path: None,
        audio: None,
        reports: None,
    }
}

impl InProcessBox {
    /// Starts a box with `options`; its `reports` are replaced by the returned channel.
    pub(crate) fn start(options: intercom::runtime::RunOptions) -> InProcessBox {
        let (keys, key_rx) = tokio::sync::mpsc::channel(64);
        let (report_tx, reports) = tokio::sync::mpsc::unbounded_channel();
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let options = intercom::runtime::RunOptions {
            reports: Some(report_tx),
            ..options
        };
        let handle = tokio::spawn(intercom::runtime::run_with_input(
            options,
            Some(key_rx),
            async {
                let _ = stop_rx.await;
            },
        ));
        InProcessBox {
            keys,
            reports,
            stop,
            handle,
        }
    }
}
