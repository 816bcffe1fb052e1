//! `quarry ingest URL` and `quarry sync URL` against a small web site served on loopback: depth, same-site,
//! include/exclude, robots.txt (Disallow, Crawl-delay), redirects, a linked PDF, 404s and mirroring.

#![allow(clippy::unwrap_used)]

mod common;
use common::{documents, json, quarry};

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::Value;

type Page = (u16, &'static str, Vec<u8>);

#[derive(Default)]
struct Site {
    pages: HashMap<String, Page>,
    /// (Host header, path, when) of every request.
    log: Vec<(String, String, Instant)>,
}

/// Serves `site` on 127.0.0.1 (one request per connection); returns the port.
fn serve(site: Arc<Mutex<Site>>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
            let mut host = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                    break;
                }
                if let Some(h) = line.strip_prefix("host:").or_else(|| line.strip_prefix("Host:")) {
                    host = h.trim().to_string();
                }
            }
            let (status, ctype, body) = {
                let mut s = site.lock().unwrap();
                s.log.push((host, path.clone(), Instant::now()));
                s.pages
                    .get(&path)
                    .cloned()
                    .unwrap_or((404, "text/plain", b"not found".to_vec()))
            };
            let extra = if (300..400).contains(&status) {
                format!("Location: {}\r\n", String::from_utf8_lossy(&body))
            } else {
                String::new()
            };
            let head = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    port
}

fn html(title: &str, body: &str) -> Page {
    let page = format!(
        "<!doctype html><html lang=\"en\"><head><title>{title}</title></head><body>\
         <nav><a href=\"/\">Home</a> | <a href=\"/b\">B</a></nav><article><h1>{title}</h1>{body}</article>\
         <footer>Copyright the example site</footer></body></html>"
    );
    (200, "text/html; charset=utf-8", page.into_bytes())
}

fn top(data: &Path, query: &str) -> String {
    let out = quarry(data, &["search", query, "--json", "--top-k", "1", "--mode", "bm25"]);
    json(&out)["results"][0]["doc_id"].as_str().unwrap_or("").to_string()
}

#[test]
fn crawl_a_site_politely_then_mirror_its_changes() {
    let site = Arc::new(Mutex::new(Site::default()));
    let port = serve(site.clone());
    let base = format!("http://127.0.0.1:{port}");
    {
        let mut s = site.lock().unwrap();
        let p = &mut s.pages;
        p.insert(
            "/robots.txt".into(),
            (
                200,
                "text/plain",
                b"User-agent: *\nDisallow: /private\nCrawl-delay: 0.2\n".to_vec(),
            ),
        );
        let links = format!(
            "<p>Welcome to the field notes.</p><ul><li><a href=\"/a\">Lakes</a></li><li><a href=\"/private/secret\">x</a></li>\
             <li><a href=\"/skip/me\">skip</a></li><li><a href=\"http://localhost:{port}/elsewhere\">other site</a></li>\
             <li><a href=\"/files/crazy.pdf\">a PDF</a></li></ul>"
        );
        p.insert("/".into(), html("Field notes", &links));
        p.insert(
            "/a".into(),
            html("Alpine lakes", "<p>Alpine lakes freeze from the shore inward.</p><a href=\"/a/deep\">deeper</a> <a href=\"/old\">old</a>"),
        );
        p.insert(
            "/a/deep".into(),
            html(
                "Deep notes",
                "<p>Glacial flour turns the water turquoise.</p><a href=\"/a/deeper\">more</a>",
            ),
        );
        p.insert("/a/deeper".into(), html("Too deep", "<p>Beyond the depth limit.</p>"));
        p.insert("/old".into(), (301, "text/plain", b"/b".to_vec()));
        p.insert(
            "/b".into(),
            html("Basalt", "<p>Basalt columns form as lava cools and contracts.</p>"),
        );
        p.insert(
            "/private/secret".into(),
            html("Secret", "<p>Robots may not read this.</p>"),
        );
        p.insert("/skip/me".into(), html("Skipped", "<p>Excluded by pattern.</p>"));
        let pdf = std::fs::read(documents().join("pdf/crazyones.pdf")).unwrap();
        p.insert("/files/crazy.pdf".into(), (200, "application/pdf", pdf));
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let start = format!("{base}/");
    let args = ["--depth", "2", "--delay-ms", "0", "--exclude", "*/skip/*", "--json"];
    let mut cmd = vec!["ingest", start.as_str()];
    cmd.extend(args);
    let out = quarry(&data, &cmd);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let res = json(&out);
    let report = &res["crawls"][0]["report"];
    assert_eq!(report["disallowed_by_robots"], 1, "{report}");
    assert_eq!(report["complete"], true, "{report}");

    let log = site.lock().unwrap().log.clone();
    let paths: Vec<&str> = log.iter().map(|(_, p, _)| p.as_str()).collect();
    for want in ["/robots.txt", "/", "/a", "/a/deep", "/old", "/b", "/files/crazy.pdf"] {
        assert!(paths.contains(&want), "{want} not fetched: {paths:?}");
    }
    for never in ["/private/secret", "/skip/me", "/a/deeper", "/elsewhere"] {
        assert!(!paths.contains(&never), "{never} fetched: {paths:?}");
    }
    assert!(
        log.iter().all(|(h, _, _)| h.starts_with("127.0.0.1")),
        "another site was visited"
    );
    // robots.txt asks for 0.2 s between requests, which overrides --delay-ms 0.
    for w in log.windows(2) {
        let gap = w[1].2.duration_since(w[0].2).as_secs_f64();
        assert!(gap >= 0.18, "requests {} and {} only {gap:.3}s apart", w[0].1, w[1].1);
    }
    // Pages (the redirect's target once), and the linked PDF, are documents named by their URLs.
    assert_eq!(res["summary"]["documents_added"], 5, "{res}");
    assert_eq!(top(&data, "alpine lakes freeze"), format!("{base}/a"));
    assert_eq!(top(&data, "basalt columns lava"), format!("{base}/b"));
    assert_eq!(
        top(&data, "crazy ones misfits rebels"),
        format!("{base}/files/crazy.pdf")
    );
    // Navigation and footer are not part of the page text.
    let out = quarry(&data, &["search", "copyright", "--json", "--mode", "bm25"]);
    let res = json(&out);
    assert_eq!(
        res["results"].as_array().unwrap().len(),
        0,
        "page furniture was indexed: {res}"
    );

    // The site changes: one page is gone (404), one is edited and no longer links to /a/deep. Sync mirrors
    // both: the 404 and the page that is no longer reachable leave the index.
    {
        let mut s = site.lock().unwrap();
        s.pages.insert(
            "/a".into(),
            html("Alpine lakes", "<p>Alpine lakes hold meltwater until late summer.</p>"),
        );
        s.pages.remove("/b");
        s.pages.remove("/old");
        s.log.clear();
    }
    let mut cmd = vec!["sync", start.as_str()];
    cmd.extend(args);
    let out = quarry(&data, &cmd);
    let res = json(&out);
    let s = &res["summary"];
    assert_eq!(
        (&s["documents_added"], &s["documents_updated"], &s["documents_removed"]),
        (&Value::from(0), &Value::from(1), &Value::from(2)),
        "{res}"
    );
    assert_eq!(top(&data, "meltwater late summer"), format!("{base}/a"));
    assert_eq!(
        top(&data, "basalt columns lava"),
        "",
        "the 404 page is gone from the index"
    );
    assert_eq!(
        top(&data, "glacial flour turquoise"),
        "",
        "the unreachable page is gone from the index"
    );

    // A crawl cut short by the page limit removes nothing it did not see.
    let out = quarry(
        &data,
        &["sync", start.as_str(), "--max-pages", "1", "--delay-ms", "0", "--json"],
    );
    let res = json(&out);
    assert_eq!(res["crawls"][0]["report"]["complete"], false, "{res}");
    assert_eq!(res["summary"]["documents_removed"], 0, "{res}");
}
