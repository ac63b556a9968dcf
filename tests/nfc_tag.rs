//! The NTAG I2C plus driver against the model of the tag's I2C side (`hw::sim::SimNtag`),
//! as the display tests model their controllers: 16-byte blocks, the capability
//! container in block 0, the session register NS_REG (EEPROM busy after each write, RF
//! lock while a phone reads), and what a phone's reader then finds in user memory. Every
//! byte written is checked: only whole blocks of user memory, never while the EEPROM is
//! busy, and an erase leaves nothing of the last message.

use intercom::hw::ntag::{NtagI2cPlus, DEFAULT_ADDRESS, EMPTY_TLV};
use intercom::hw::sim::SimNtag;
use intercom::hw::NfcTag;

/// A tag a previous run left a link with a PIN on (the box crashed), opened.
fn tag() -> (NtagI2cPlus<SimNtag>, SimNtag) {
    let sim = SimNtag::new();
    {
        let mut chip = sim.chip();
        let stale = b"\x03\x1e\xd1\x01\x1aU\x04old.example/#v=1&pin=9999\xfe";
        for (i, chunk) in stale.chunks(16).enumerate() {
            chip.blocks[1 + i][..chunk.len()].copy_from_slice(chunk);
        }
        assert_eq!(
            chip.uri().unwrap().unwrap(),
            "https://old.example/#v=1&pin=9999"
        );
    }
    let tag = NtagI2cPlus::open(sim.clone(), DEFAULT_ADDRESS).unwrap();
    (tag, sim)
}

#[test]
fn opening_erases_what_a_previous_run_left() {
    let (_tag, chip) = tag();
    let chip = chip.chip();
    assert!(chip.faults.is_empty(), "{:?}", chip.faults);
    assert_eq!(&chip.blocks[1][..3], &EMPTY_TLV);
    assert!(chip.blocks[1][3..].iter().all(|&b| b == 0));
    assert!(chip.blocks[2..=0x37].iter().flatten().all(|&b| b == 0));
    assert_eq!(chip.uri(), Ok(None));
    // Block 0 (serial, capability container) is never touched.
    assert_eq!(chip.blocks[0][12..], [0xE1, 0x10, 0x6D, 0x00]);
}

#[test]
fn a_link_reads_back_as_a_phone_sees_it_and_the_erase_leaves_nothing() {
    let (mut tag, chip) = tag();
    let link = "https://intercom.example.org/#v=1&room=0f1e2d3c4b5a6978&name=Front%20door\
                &tcp=192.168.1.20:7300&n=17&rv=wss%3A%2F%2Frv.example.org%2Fv1&pin=4821";
    chip.chip().writes.clear();
    tag.write_uri(link).unwrap();
    {
        let chip = chip.chip();
        assert!(chip.faults.is_empty(), "{:?}", chip.faults);
        assert_eq!(chip.uri().unwrap().as_deref(), Some(link));
        // Whole blocks from the first, in order, none twice.
        let n = chip.writes.len();
        assert_eq!(chip.writes, (1..=n as u8).collect::<Vec<_>>());
    }
    // A shorter link after it: the longer one's tail is gone too.
    tag.write_uri("https://intercom.example.org/#v=1&room=00")
        .unwrap();
    {
        let chip = chip.chip();
        assert_eq!(
            chip.uri().unwrap().as_deref(),
            Some("https://intercom.example.org/#v=1&room=00")
        );
        let all: Vec<u8> = chip.blocks[1..=0x37].iter().flatten().copied().collect();
        assert!(!all.windows(4).any(|w| w == b"4821"), "the old PIN stayed");
    }
    tag.erase().unwrap();
    let chip = chip.chip();
    assert!(chip.faults.is_empty(), "{:?}", chip.faults);
    assert_eq!(chip.uri(), Ok(None));
    let all: Vec<u8> = chip.blocks[1..=0x37].iter().flatten().copied().collect();
    assert_eq!(&all[..3], &EMPTY_TLV);
    assert!(all[3..].iter().all(|&b| b == 0), "bytes of the link stayed");
}

#[test]
fn the_box_waits_while_a_phone_reads() {
    let (mut tag, chip) = tag();
    chip.chip().rf_reads = 5;
    tag.write_uri("https://intercom.example.org/#v=1&room=00")
        .unwrap();
    let chip = chip.chip();
    assert_eq!(chip.rf_reads, 0, "wrote before the phone let go");
    assert_eq!(
        chip.uri().unwrap().as_deref(),
        Some("https://intercom.example.org/#v=1&room=00")
    );
}

#[test]
fn a_tag_without_ndef_is_a_clear_error() {
    let sim = SimNtag::new();
    sim.chip().blocks[0][12] = 0;
    let err = NtagI2cPlus::open(sim, DEFAULT_ADDRESS).err().unwrap();
    let text = intercom::errors::chain(&err);
    assert!(text.contains("capability container"), "{text}");
}

mod common;

/// A simulated box whose board has the tag (the chip's model), its QR a link into the
/// web client unless `link` is false.
fn tagged_box(dir: &std::path::Path, name: &str, link: bool) -> intercom_test_support::SimBox {
    let board = dir.join(format!("{name}-board.toml"));
    let sim =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/board/sim.toml")).unwrap();
    std::fs::write(
        &board,
        format!("{sim}\n[nfc]\ndriver = \"ntag-i2c-plus\"\ndevice = \"sim\"\n"),
    )
    .unwrap();
    let mut o = intercom_test_support::BoxOptions::new(env!("CARGO_BIN_EXE_intercom"), name);
    o.board = board.display().to_string();
    if link {
        o.config
            .push_str("web_client_url = \"https://intercom.example.org/\"\n");
    }
    intercom_test_support::SimBox::start(dir, o)
}

#[test]
fn the_box_puts_the_rooms_link_on_the_tag_and_takes_it_off_when_the_call_starts() {
    if !common::in_private_network(
        "the_box_puts_the_rooms_link_on_the_tag_and_takes_it_off_when_the_call_starts",
    ) {
        return;
    }
    let t = std::time::Duration::from_secs(30);
    let dir = tempfile::tempdir().unwrap();
    let a = tagged_box(dir.path(), "Box A", true);
    let b = tagged_box(dir.path(), "Box B", false);
    a.keys("*");
    // The simulated tag reads back, as a phone would, exactly the link it was given.
    assert_eq!(a.expect_event("nfc", 0, t)["holds_link"], true);
    let m = a.mark();
    // Closed (`#`): the tag is empty again.
    a.keys("#");
    a.wait_state("idle", m, t);
    assert_eq!(a.expect_event("nfc", m, t)["holds_link"], false);
    let m = a.mark();
    a.keys("*");
    assert_eq!(a.expect_event("nfc", m, t)["holds_link"], true);
    let m = a.mark();
    let pin = a.invite().pin.unwrap();
    b.keys(&format!("#{}#", pin.as_str()));
    a.expect_event("media_connected", 0, t);
    assert_eq!(a.expect_event("nfc", m, t)["holds_link"], false);
    // B's QR is no link (no web client configured): its tag held nothing at any time.
    b.keys("##");
    a.expect_event("call_ended", 0, t);
    let mb = b.mark();
    b.wait_state("idle", 0, t);
    b.keys("*");
    b.wait_state("room open", mb, t);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(b.count(|v| v["event"] == "nfc"), 0, "{}", b.log());
    a.stop();
    b.stop();
}
