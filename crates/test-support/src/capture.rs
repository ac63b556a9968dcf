//! What crossed a TCP port, read back from a capture (pcap): the pcap's IPv4/TCP
//! segments put back in order per direction, then the WebSocket messages in each
//! direction, unmasked. For checking what a server (the rendezvous) could read.

use std::collections::BTreeMap;

/// One direction of one TCP connection: source and destination address and port.
type Flow = ([u8; 4], u16, [u8; 4], u16);

/// The payload bytes of every TCP flow in a pcap capture, in sequence order (repeats
/// and overlaps dropped). Link types: raw IP, Linux cooked v1 and v2, Ethernet.
pub fn tcp_streams(pcap: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    if pcap.len() < 24 {
        return Err("not a pcap file".into());
    }
    let le = match pcap[..4] {
        [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => true,
        [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => false,
        _ => return Err("not a pcap file".into()),
    };
    let u32_at = |b: &[u8], i: usize| {
        let w = [b[i], b[i + 1], b[i + 2], b[i + 3]];
        if le {
            u32::from_le_bytes(w)
        } else {
            u32::from_be_bytes(w)
        }
    };
    let link = u32_at(pcap, 20);
    // The link header's length and where its EtherType is (none for raw IP).
    let (link_header, proto_at) = match link {
        101 => (0, None),
        1 => (14, Some(12)),
        113 => (16, Some(14)),
        276 => (20, Some(0)),
        other => return Err(format!("link type {other} is not handled")),
    };
    let mut segments: BTreeMap<Flow, BTreeMap<u32, Vec<u8>>> = BTreeMap::new();
    let mut at = 24;
    while at + 16 <= pcap.len() {
        let captured = u32_at(pcap, at + 8) as usize;
        let packet = pcap
            .get(at + 16..at + 16 + captured)
            .ok_or("a truncated packet")?;
        at += 16 + captured;
        if packet.len() < link_header + 20 {
            continue;
        }
        let ipv4 = proto_at.is_none_or(|at| packet[at..at + 2] == [0x08, 0x00]);
        let ip = &packet[link_header..];
        if !ipv4 || ip[0] >> 4 != 4 || ip[9] != 6 {
            continue;
        }
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]])).min(ip.len());
        let Some(tcp) = ip.get(ihl..total) else {
            continue;
        };
        if tcp.len() < 20 {
            continue;
        }
        let offset = usize::from(tcp[12] >> 4) * 4;
        let Some(payload) = tcp.get(offset..).filter(|p| !p.is_empty()) else {
            continue;
        };
        let flow = (
            [ip[12], ip[13], ip[14], ip[15]],
            u16::from_be_bytes([tcp[0], tcp[1]]),
            [ip[16], ip[17], ip[18], ip[19]],
            u16::from_be_bytes([tcp[2], tcp[3]]),
        );
        let seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
        segments
            .entry(flow)
            .or_default()
            .entry(seq)
            .or_insert_with(|| payload.to_vec());
    }
    Ok(segments
        .into_values()
        .map(|by_seq| {
            let mut out = Vec::new();
            let mut next: Option<u32> = None;
            for (seq, data) in by_seq {
                // Skip what an earlier segment already held (a retransmission).
                let skip = next.map_or(0, |n| n.wrapping_sub(seq) as usize);
                if skip < data.len() {
                    out.extend_from_slice(&data[skip..]);
                    next = Some(seq.wrapping_add(data.len() as u32));
                }
            }
            out
        })
        .collect())
}

/// The WebSocket messages (text and binary, unmasked) in one direction's bytes, after
/// the HTTP upgrade; empty when the stream is not a WebSocket.
pub fn websocket_messages(stream: &[u8]) -> Vec<Vec<u8>> {
    let Some(head_end) = stream.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Vec::new();
    };
    let mut at = head_end + 4;
    let mut messages = Vec::new();
    let mut partial = Vec::new();
    while at + 2 <= stream.len() {
        let (b0, b1) = (stream[at], stream[at + 1]);
        let mut len = u64::from(b1 & 0x7f);
        let mut i = at + 2;
        if len == 126 {
            let Some(l) = stream.get(i..i + 2) else { break };
            len = u64::from(u16::from_be_bytes([l[0], l[1]]));
            i += 2;
        } else if len == 127 {
            let Some(l) = stream.get(i..i + 8) else { break };
            len = u64::from_be_bytes(l.try_into().unwrap_or_default());
            i += 8;
        }
        let mask = if b1 & 0x80 != 0 {
            let Some(m) = stream.get(i..i + 4) else { break };
            i += 4;
            Some([m[0], m[1], m[2], m[3]])
        } else {
            None
        };
        let Some(body) = usize::try_from(len).ok().and_then(|l| stream.get(i..i + l)) else {
            break;
        };
        at = i + body.len();
        let opcode = b0 & 0x0f;
        if opcode >= 8 {
            continue; // close, ping, pong
        }
        partial.extend(
            body.iter()
                .enumerate()
                .map(|(k, b)| b ^ mask.map_or(0, |m| m[k % 4])),
        );
        if b0 & 0x80 != 0 {
            messages.push(std::mem::take(&mut partial));
        }
    }
    messages
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(seq: u32, payload: &[u8]) -> Vec<u8> {
        // Linux cooked v1 header, IPv4, TCP.
        let mut p = vec![0u8; 14];
        p.extend_from_slice(&[0x08, 0x00]);
        let total = (20 + 20 + payload.len()) as u16;
        let mut ip = vec![
            0x45, 0, 0, 0, 0, 0, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        p.extend(ip);
        let mut tcp = vec![0u8; 20];
        tcp[0..2].copy_from_slice(&5000u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&4000u16.to_be_bytes());
        tcp[4..8].copy_from_slice(&seq.to_be_bytes());
        tcp[12] = 5 << 4;
        p.extend(tcp);
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn segments_out_of_order_and_repeated_give_back_masked_messages() {
        let mask = [1u8, 2, 3, 4];
        let text = br#"{"type":"add","body":"00"}"#;
        let mut bytes = b"GET /v1 HTTP/1.1\r\n\r\n".to_vec();
        bytes.extend([0x81, 0x80 | text.len() as u8]);
        bytes.extend(mask);
        bytes.extend(text.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        let (first, second) = bytes.split_at(25);
        let mut pcap = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
        pcap.extend([0u8; 12]);
        pcap.extend(113u32.to_le_bytes());
        for p in [
            packet(100 + 25, second),
            packet(100, first),
            packet(100 + 25, second),
        ] {
            pcap.extend([0u8; 8]);
            pcap.extend((p.len() as u32).to_le_bytes());
            pcap.extend((p.len() as u32).to_le_bytes());
            pcap.extend(p);
        }
        let streams = tcp_streams(&pcap).unwrap();
        assert_eq!(streams, vec![bytes.clone()]);
        assert_eq!(websocket_messages(&streams[0]), vec![text.to_vec()]);
    }
}
