//! HTTPS and `wss://` on the NAT bed's internet, as a phone meets them: a static host
//! serving the web client over HTTPS, and TLS in front of the mailbox server (which
//! speaks plain `ws://`), both with a certificate for [`SERVER_IP`](crate::nat::SERVER_IP)
//! from a test CA made for the run.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::nat::{NatBed, Server, SERVER_IP};

/// The HTTPS port of the static host.
pub const HTTPS_PORT: u16 = 8443;
/// The `wss://` port in front of the mailbox server.
pub const WSS_PORT: u16 = 4443;

/// A test CA and a server certificate for [`SERVER_IP`], made with `openssl`.
pub struct TlsFiles {
    /// The CA's certificate (PEM): what a client trusts.
    pub ca: PathBuf,
    /// The server's certificate (PEM).
    pub cert: PathBuf,
    /// The server's key (PEM).
    pub key: PathBuf,
}

/// Makes the CA and the server certificate in `dir`; `None` without `openssl`.
pub fn make_certificates(dir: &Path) -> Option<TlsFiles> {
    let files = TlsFiles {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    };
    let ext = dir.join("server.ext");
    std::fs::write(
        &ext,
        format!(
            "subjectAltName=IP:{SERVER_IP}\nbasicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        ),
    )
    .ok()?;
    let d = |f: &str| dir.join(f).display().to_string();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let (ca_key, csr, ext) = (d("ca.key"), d("server.csr"), ext.display().to_string());
    let (ca, cert, key) = (d("ca.pem"), d("server.pem"), d("server.key"));
    let cn = format!("/CN={SERVER_IP}");
    let steps: [Vec<&str>; 3] = [
        [
            &["req", "-x509"][..],
            &ec,
            &["-keyout", &ca_key, "-out", &ca, "-days", "2"],
        ]
        .concat()
        .into_iter()
        .chain([
            "-subj",
            "/CN=intercom test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
        ])
        .collect(),
        [
            &["req"][..],
            &ec,
            &["-keyout", &key, "-out", &csr, "-subj", &cn],
        ]
        .concat(),
        vec![
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &cert,
            "-days",
            "2",
            "-extfile",
            &ext,
        ],
    ];
    for args in steps {
        let out = match Command::new("openssl").args(&args).output() {
            Ok(out) => out,
            Err(e) => {
                eprintln!("no openssl: {e}");
                return None;
            }
        };
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Some(files)
}

/// The front: HTTPS for `web_root` on [`HTTPS_PORT`] (with `config_json` served as
/// `/config.json`) and `wss://` on [`WSS_PORT`] to the mailbox server at
/// `SERVER_IP:4000`, on the bed's internet. Stopped when dropped.
pub fn start(bed: &NatBed, tls: &TlsFiles, web_root: &Path, config_json: &str) -> Option<Server> {
    let mut cmd = bed.internet.command("python3");
    cmd.args(["-c", FRONT])
        .arg(&tls.cert)
        .arg(&tls.key)
        .arg(web_root)
        .arg(config_json)
        .args([
            SERVER_IP,
            &HTTPS_PORT.to_string(),
            &WSS_PORT.to_string(),
            "4000",
        ]);
    Server::spawn_ready(cmd, "serving", "the TLS front")
}

/// The front itself (Python's asyncio and ssl): a static file host that answers GET and
/// HEAD with the file's bytes and type, and a TLS-terminating pipe to the mailbox server.
const FRONT: &str = r#"
import asyncio, mimetypes, os, ssl, sys
cert, key, root, config, ip, https_port, wss_port, backend = sys.argv[1:9]
root = os.path.realpath(root)
types = {'.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm',
         '.html': 'text/html; charset=utf-8', '.css': 'text/css', '.json': 'application/json',
         '.webmanifest': 'application/manifest+json', '.png': 'image/png'}
ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(cert, key)

async def http(reader, writer):
    try:
        head = await asyncio.wait_for(reader.readuntil(b'\r\n\r\n'), 10)
        method, target = head.split(b' ')[:2]
        path = target.decode().split('?')[0].split('#')[0]
        if path == '/':
            path = '/index.html'
        if path == '/config.json':
            body, status, kind = config.encode(), '200 OK', 'application/json'
        else:
            full = os.path.realpath(os.path.join(root, path.lstrip('/')))
            if full.startswith(root + os.sep) and os.path.isfile(full):
                body = open(full, 'rb').read()
                status = '200 OK'
                kind = types.get(os.path.splitext(full)[1], 'application/octet-stream')
            else:
                body, status, kind = b'not found', '404 Not Found', 'text/plain'
        writer.write((f'HTTP/1.1 {status}\r\nContent-Type: {kind}\r\n'
                      f'Content-Length: {len(body)}\r\nCache-Control: no-cache\r\n'
                      'Connection: close\r\n\r\n').encode())
        if method != b'HEAD':
            writer.write(body)
        await writer.drain()
    except Exception:
        pass
    finally:
        writer.close()

async def pipe(src, dst):
    try:
        while data := await src.read(65536):
            dst.write(data)
            await dst.drain()
    except Exception:
        pass
    finally:
        dst.close()

async def wss(reader, writer):
    try:
        up_r, up_w = await asyncio.open_connection(ip, int(backend))
    except Exception:
        writer.close()
        return
    await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))

async def main():
    a = await asyncio.start_server(http, ip, int(https_port), ssl=ctx)
    b = await asyncio.start_server(wss, ip, int(wss_port), ssl=ctx)
    print('serving', flush=True)
    await asyncio.gather(a.serve_forever(), b.serve_forever())

asyncio.run(main())
"#;
