//! The web app in a real browser: the server listens on a loopback port over a small corpus, Debian's
//! headless `chromium` loads the page, and the test drives it over the Chrome DevTools Protocol the way a
//! person would — it types the API key and a question, presses Enter, waits for the streamed answer,
//! clicks a citation and reads the highlighted passage. No screenshots; every wait has a deadline and
//! fails saying what it waited for.
//!
//! Chromium is found at $QUARRY_CHROMIUM, else `chromium` / `chromium-browser` on PATH (scripts/setup.sh
//! installs it); when it is missing the test fails and says how to install it.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use quarry_server::Scope;
use serde_json::{json, Value};
use tungstenite::{Message, WebSocket};

use crate::common::*;

const SCURVY: &str = "Scurvy\n\nScurvy is caused by a lack of vitamin C in the diet. Sailors on long voyages \
suffered from it until citrus fruit was carried on board. A ship's log once read <img src=x onerror=alert(1)> \
in the margin.\n\nEating oranges or lemons cures scurvy within weeks.\n";
const KILN: &str = "Kilns\n\nA kiln fires clay at temperatures above nine hundred degrees. Stoneware needs a \
hotter firing than earthenware.\n";
const OTHER_TENANT: &str = "Secret scurvy notes\n\nGlobex believes scurvy is caused by moonlight.\n";

/// Longest wait for anything the page does.
const DEADLINE: Duration = Duration::from_secs(30);

fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("QUARRY_CHROMIUM") {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser"] {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "headless Chromium is needed for the web app test: `apt-get install chromium` (Debian), \
         or set QUARRY_CHROMIUM to a Chromium binary"
    );
}

/// A headless Chromium of this test's own, killed when dropped.
struct Browser {
    child: Child,
    profile: tempfile::TempDir,
}

impl Browser {
    fn launch() -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(profile.path().join("chromium.log")).unwrap();
        let child = Command::new(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "--window-size=1200,900",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromium().display()));
        Browser { child, profile }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.profile.path().join("chromium.log")).unwrap_or_default()
    }

    /// The browser's DevTools websocket, from the DevToolsActivePort file Chromium writes once it listens.
    fn devtools(&mut self) -> Cdp {
        let file = self.profile.path().join("DevToolsActivePort");
        let started = Instant::now();
        let text = loop {
            if let Ok(t) = std::fs::read_to_string(&file) {
                if t.lines().count() >= 2 {
                    break t;
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("chromium exited ({status}) before opening DevTools:\n{}", self.log());
            }
            assert!(
                started.elapsed() < DEADLINE,
                "chromium wrote no DevToolsActivePort within {DEADLINE:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut lines = text.lines();
        let port: u16 = lines.next().unwrap().trim().parse().unwrap();
        let path = lines.next().unwrap().trim().to_string();
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (ws, _) = tungstenite::client(format!("ws://127.0.0.1:{port}{path}"), stream).unwrap();
        // Reads wake up regularly so a silent browser becomes a failed deadline, not a hung test.
        ws.get_ref().set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        Cdp {
            ws,
            next_id: 1,
            session: None,
            exceptions: Vec::new(),
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Chrome DevTools Protocol connection, attached to one page after [`Cdp::open_page`].
struct Cdp {
    ws: WebSocket<TcpStream>,
    next_id: u64,
    session: Option<String>,
    /// Uncaught exceptions the page reported.
    exceptions: Vec<String>,
}

impl Cdp {
    fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = &self.session {
            msg["sessionId"] = json!(s);
        }
        self.ws.send(Message::text(msg.to_string())).unwrap();
        let started = Instant::now();
        loop {
            assert!(
                started.elapsed() < DEADLINE,
                "chromium did not answer {method} within {DEADLINE:?}"
            );
            let text = match self.ws.read() {
                Ok(Message::Text(t)) => t,
                Ok(_) => continue,
                Err(tungstenite::Error::Io(e))
                    if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) =>
                {
                    continue
                }
                Err(e) => panic!("DevTools connection failed during {method}: {e}"),
            };
            let v: Value = serde_json::from_str(text.as_str()).unwrap();
            if v["method"] == "Runtime.exceptionThrown" {
                self.exceptions
                    .push(v["params"]["exceptionDetails"]["exception"]["description"].to_string());
            }
            if v["id"] == json!(id) {
                if let Some(e) = v.get("error") {
                    panic!("{method} failed: {e}");
                }
                return v["result"].clone();
            }
        }
    }

    /// Opens a tab and attaches this connection to it.
    fn open_page(&mut self) {
        let target = self.call("Target.createTarget", json!({ "url": "about:blank" }));
        let attached = self.call(
            "Target.attachToTarget",
            json!({ "targetId": target["targetId"], "flatten": true }),
        );
        self.session = Some(attached["sessionId"].as_str().unwrap().to_string());
        self.call("Runtime.enable", json!({}));
        self.call("Page.enable", json!({}));
    }

    /// Evaluates an expression in the page (awaiting a promise) and returns its value.
    fn eval(&mut self, expression: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
        );
        if let Some(e) = r.get("exceptionDetails") {
            panic!("evaluating `{expression}` threw: {e}");
        }
        r["result"]["value"].clone()
    }

    /// Polls `condition` until it is true; fails naming `what`, with the page's status line.
    fn wait(&mut self, what: &str, condition: &str) {
        let started = Instant::now();
        while self.eval(condition) != json!(true) {
            if started.elapsed() > DEADLINE {
                let status = self.eval("(document.getElementById('status') || {}).textContent");
                panic!(
                    "waited {DEADLINE:?} for {what}; status line: {status}; page exceptions: {:?}",
                    self.exceptions
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A left click in the middle of the element, as the mouse would (the element must be on top there).
    fn click(&mut self, selector: &str) {
        let sel = serde_json::to_string(selector).unwrap();
        let point = self.eval(&format!(
            "(function() {{ var e = document.querySelector({sel}); if (!e) {{ return null; }}
               e.scrollIntoView({{block: 'center'}}); var r = e.getBoundingClientRect();
               var x = r.left + r.width / 2, y = r.top + r.height / 2; var hit = document.elementFromPoint(x, y);
               return (hit === e || e.contains(hit)) ? [x, y] : 'covered by ' + (hit ? hit.outerHTML.slice(0, 80) : 'nothing'); }})()"
        ));
        let [x, y] = match point.as_array().map(Vec::as_slice) {
            Some([x, y]) => [x.as_f64().unwrap(), y.as_f64().unwrap()],
            _ => panic!("cannot click {selector}: {point}"),
        };
        for kind in ["mouseMoved", "mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({ "type": kind, "x": x, "y": y, "button": "left", "clickCount": 1 }),
            );
        }
    }

    /// Focuses an input by clicking it and types `text` into it.
    fn type_into(&mut self, selector: &str, text: &str) {
        self.click(selector);
        let sel = serde_json::to_string(selector).unwrap();
        assert_eq!(
            self.eval(&format!("document.activeElement === document.querySelector({sel})")),
            json!(true),
            "clicking {selector} did not focus it"
        );
        self.call("Input.insertText", json!({ "text": text }));
    }

    fn press_enter(&mut self) {
        for kind in ["keyDown", "keyUp"] {
            self.call(
                "Input.dispatchKeyEvent",
                json!({ "type": kind, "key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13,
                        "nativeVirtualKeyCode": 13, "text": "\r" }),
            );
        }
    }
}

#[test]
fn the_web_app_streams_an_answer_and_opens_the_cited_passage_in_headless_chromium() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let f = rt.block_on(async {
        let f = fixture();
        for (key, name, text) in [
            (&f.acme, "scurvy.txt", SCURVY),
            (&f.acme, "kiln.txt", KILN),
            (&f.globex, "secret.txt", OTHER_TENANT),
        ] {
            let job = upload(&f.app, key, name, text, "").await;
            assert_eq!(job["state"], "done", "{job}");
        }
        f
    });
    // The browser's key: acme/eng, and it may run evaluations.
    let store = quarry_server::KeyStore::in_dir(f.dir.path()).unwrap();
    let key = crate::common::key(
        &store,
        Some("acme"),
        &["eng"],
        &[Scope::Read, Scope::Ingest, Scope::Eval],
    );
    let run = rt.block_on(async {
        let set = json!({ "question": "What causes scurvy?", "gold_doc_ids": ["upload://acme/scurvy.txt"] });
        let r = post(
            &f.app,
            "/api/eval/runs",
            Some(&key),
            json!({ "eval_set": format!("{set}\n"), "name": "smoke" }),
        )
        .await;
        assert_eq!(r.status, axum::http::StatusCode::ACCEPTED, "{}", r.text);
        r.json()["id"].as_str().unwrap().to_string()
    });
    let corpus = [("upload://acme/scurvy.txt", SCURVY), ("upload://acme/kiln.txt", KILN)];
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = rt.spawn(quarry_server::serve(listener, f.state.clone(), async {
        let _ = stopped.await;
    }));

    let mut browser = Browser::launch();
    let mut page = browser.devtools();
    page.open_page();
    page.call("Page.navigate", json!({ "url": format!("http://{addr}/") }));
    page.wait(
        "the app to start",
        "document.body && document.body.dataset.ready === '1'",
    );

    // The key, pasted once: typed into the settings field and kept by the browser.
    page.click(".tab[data-panel=settings]");
    page.type_into("#api-key", &key);
    page.click("#key-save");
    page.wait(
        "the key to be saved",
        &format!("localStorage.getItem('quarry.apiKey') === {}", json!(key)),
    );

    // A question, typed and submitted with Enter; the answer streams in, then its citations.
    page.click(".tab[data-panel=ask]");
    page.type_into("#question", "What causes scurvy?");
    page.press_enter();
    page.wait(
        "an answer with at least one citation",
        "document.querySelector('#answer[data-state=done] button.cite') !== null",
    );
    let answer = page.eval(
        "({ text: document.getElementById('answer').textContent,
            tokens: +document.getElementById('answer').dataset.tokens,
            cites: Array.from(document.querySelectorAll('#answer button.cite')).map(function (b) { return b.dataset.docId; }) })",
    );
    assert!(
        answer["tokens"].as_u64().unwrap() >= 1,
        "no token events reached the page: {answer}"
    );
    assert!(answer["text"].as_str().unwrap().contains("vitamin C"), "{answer}");
    for cited in answer["cites"].as_array().unwrap() {
        assert!(
            corpus.iter().any(|(id, _)| cited == id),
            "the answer cites a document acme may not read: {answer}"
        );
    }

    // Clicking the first citation opens its document with the cited passage highlighted.
    page.click("#answer button.cite");
    page.wait(
        "the cited document to open",
        "document.getElementById('viewer').dataset.state === 'ready' && !!document.getElementById('highlight')",
    );
    let shown = page.eval(
        "({ doc: document.getElementById('viewer').dataset.docId,
            cited: document.querySelector('#answer button.cite').dataset.docId,
            n: document.querySelector('#answer button.cite').dataset.n,
            mark: document.getElementById('highlight').textContent,
            text: document.getElementById('viewer-text').textContent,
            images: document.querySelectorAll('#viewer-text img').length })",
    );
    assert_eq!(
        shown["doc"], shown["cited"],
        "the viewer opened another document: {shown}"
    );
    let doc_id = shown["doc"].as_str().unwrap();
    let (_, doc_text) = corpus
        .iter()
        .find(|(id, _)| *id == doc_id)
        .unwrap_or_else(|| panic!("the viewer shows {doc_id}, not a corpus document"));
    let mark = shown["mark"].as_str().unwrap();
    assert!(
        mark.trim().len() > 10 && doc_text.contains(mark),
        "the highlight is not a passage of {doc_id}: {shown}"
    );
    assert_eq!(
        shown["text"].as_str().unwrap(),
        *doc_text,
        "the viewer shows the whole document"
    );
    // The sources list quotes the same passage the highlight marks.
    let n = shown["n"].as_str().unwrap();
    let snippet = page.eval(&format!(
        "document.querySelector('#citations li[value=\"{n}\"] .snippet').textContent"
    ));
    assert_eq!(
        snippet.as_str().unwrap(),
        mark,
        "citation text and highlighted span differ"
    );
    if doc_id.ends_with("scurvy.txt") {
        assert_eq!(shown["images"], 0, "document text became markup: {shown}");
        assert!(shown["text"].as_str().unwrap().contains("<img src=x"), "{shown}");
    }

    // The documents panel lists acme's two documents with their chunk counts, and the finished uploads.
    page.click(".tab[data-panel=documents]");
    page.wait(
        "the document list and the upload jobs",
        "document.querySelectorAll('#documents tbody tr').length === 2 && document.querySelectorAll('#jobs tbody tr').length === 2",
    );
    let listed = page.eval(
        "Array.from(document.querySelectorAll('#documents tbody tr')).map(function (r) {
           return [r.cells[1].textContent, +r.cells[2].textContent]; })",
    );
    let mut sources: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert!(r[1].as_u64().unwrap() >= 1, "a document without chunks: {listed}");
            r[0].as_str().unwrap()
        })
        .collect();
    sources.sort_unstable();
    assert_eq!(sources, ["upload://acme/kiln.txt", "upload://acme/scurvy.txt"]);
    let states = page.eval("Array.from(document.querySelectorAll('#jobs tbody td:nth-child(2)')).map(function (c) { return c.textContent; })");
    assert_eq!(states, json!(["done", "done"]));

    // The evaluation panel shows the latest finished run: its means and quarry-eval's report.
    page.click(".tab[data-panel=eval]");
    page.wait(
        "the latest evaluation run's metrics and report",
        &format!(
            "document.getElementById('eval-metrics').dataset.run === {} && !document.getElementById('eval-report').hidden",
            json!(run)
        ),
    );
    let shown = page.eval(
        "({ rows: Array.from(document.querySelectorAll('#eval-metrics tbody tr')).map(function (r) { return r.cells[0].textContent; }),
            report: document.getElementById('eval-report').srcdoc.indexOf('What causes scurvy?') >= 0,
            runs: document.querySelectorAll('#eval-runs tbody tr').length })",
    );
    assert!(
        shown["rows"].as_array().unwrap().iter().any(|m| m == "ndcg@10"),
        "{shown}"
    );
    assert_eq!(shown["report"], true, "the report frame does not hold the run's report");
    assert_eq!(shown["runs"], 1);
    assert!(page.exceptions.is_empty(), "page exceptions: {:?}", page.exceptions);

    drop(browser);
    let _ = stop.send(());
    rt.block_on(server).unwrap().unwrap();
}
