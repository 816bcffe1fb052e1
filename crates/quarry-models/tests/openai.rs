//! The OpenAI-compatible client against a scripted HTTP server on loopback: streaming, the request it
//! sends, retries, errors and timeouts.

#![allow(clippy::unwrap_used)] // test helpers panic on setup failures by design

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use quarry_core::{Error, FinishReason, LanguageModel, Message, OpenAiConfig, Sampling, TokenCounter, Usage};
use quarry_models::OpenAiModel;
use serde_json::{json, Value};

/// What the server does with one connection.
enum Reply {
    /// A complete response with a Content-Length (JSON unless a content-type header is given).
    Full {
        status: u16,
        headers: Vec<(&'static str, &'static str)>,
        body: String,
    },
    /// `200 text/event-stream`, the body written part by part and ended by closing the connection.
    Stream(Vec<Part>),
    /// Reads the request, waits, then hangs up without answering.
    Stall(Duration),
}

enum Part {
    Write(String),
    Sleep(Duration),
    /// Waits (at most 5 s) until the test signals it received what was written so far.
    Wait(mpsc::Receiver<()>),
}

struct Request {
    headers: Vec<(String, String)>,
    body: String,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

struct Server {
    url: String,
    requests: Arc<Mutex<Vec<Request>>>,
    wait_timed_out: Arc<AtomicBool>,
}

impl Server {
    fn request_count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

/// Serves `replies` in order, one connection each, on a port the OS picks.
fn serve(replies: Vec<Reply>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let requests = Arc::new(Mutex::new(Vec::new()));
    let wait_timed_out = Arc::new(AtomicBool::new(false));
    let (log, timed_out) = (requests.clone(), wait_timed_out.clone());
    thread::spawn(move || {
        for reply in replies {
            let Ok((stream, _)) = listener.accept() else { return };
            let Some(request) = read_request(&stream) else { return };
            log.lock().unwrap().push(request);
            // Write errors mean the client hung up (cancelled or timed out): fine for the script.
            let _ = respond(stream, reply, &timed_out);
        }
    });
    Server {
        url,
        requests,
        wait_timed_out,
    }
}

fn read_request(stream: &TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?; // request line
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).ok()?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (name, value) = l.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map_or(0, |(_, v)| v.parse().unwrap());
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some(Request {
        headers,
        body: String::from_utf8(body).ok()?,
    })
}

fn respond(mut stream: TcpStream, reply: Reply, wait_timed_out: &AtomicBool) -> std::io::Result<()> {
    match reply {
        Reply::Full { status, headers, body } => {
            let mut head = format!(
                "HTTP/1.1 {status} Scripted\r\nContent-Length: {}\r\nConnection: close\r\n",
                body.len()
            );
            if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("content-type")) {
                head.push_str("Content-Type: application/json\r\n");
            }
            for (name, value) in headers {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
            stream.write_all(format!("{head}\r\n{body}").as_bytes())?;
        }
        Reply::Stream(parts) => {
            stream.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n",
            )?;
            stream.flush()?;
            for part in parts {
                match part {
                    Part::Write(s) => {
                        stream.write_all(s.as_bytes())?;
                        stream.flush()?;
                    }
                    Part::Sleep(d) => thread::sleep(d),
                    Part::Wait(rx) => {
                        if rx.recv_timeout(Duration::from_secs(5)).is_err() {
                            wait_timed_out.store(true, Ordering::SeqCst);
                        }
                    }
                }
            }
        }
        Reply::Stall(d) => thread::sleep(d),
    }
    stream.shutdown(Shutdown::Both)
}

fn piece(content: &str) -> Part {
    Part::Write(format!(
        "data: {}\n\n",
        json!({"id": "c1", "object": "chat.completion.chunk", "model": "test-model",
               "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": null}]})
    ))
}

fn finish(reason: &str) -> Part {
    Part::Write(format!(
        "data: {}\n\n",
        json!({"id": "c1", "choices": [{"index": 0, "delta": {}, "finish_reason": reason}]})
    ))
}

fn usage(prompt: usize, completion: usize) -> Part {
    Part::Write(format!(
        "data: {}\n\n",
        json!({"id": "c1", "choices": [], "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
               "total_tokens": prompt + completion}})
    ))
}

fn done() -> Part {
    Part::Write("data: [DONE]\n\n".into())
}

fn ok_stream(text: &str) -> Reply {
    Reply::Stream(vec![piece(text), finish("stop"), done()])
}

fn error_reply(status: u16, message: &str) -> Reply {
    Reply::Full {
        status,
        headers: vec![],
        body: json!({"error": {"message": message, "type": "test"}}).to_string(),
    }
}

/// A configuration for `url` whose key variable is never set (tests that send a key name their own).
fn config(url: &str) -> OpenAiConfig {
    OpenAiConfig {
        base_url: url.into(),
        model: "test-model".into(),
        api_key_env: "QUARRY_TEST_KEY_NEVER_SET".into(),
        timeout_secs: 5,
        connect_timeout_secs: 2,
        retries: 0,
        context_window: 4096,
        tokenizer: None,
    }
}

fn messages() -> Vec<Message> {
    vec![Message::system("Answer briefly."), Message::user("Say hello.")]
}

/// Runs a chat, collecting the pieces the callback saw.
fn chat(model: &OpenAiModel) -> (quarry_core::Result<quarry_core::Completion>, Vec<String>) {
    let mut pieces = Vec::new();
    let result = model.chat(&messages(), &Sampling::default(), &mut |p| {
        pieces.push(p.to_string());
        true
    });
    (result, pieces)
}

fn service_error(result: quarry_core::Result<quarry_core::Completion>) -> (String, String, bool) {
    match result {
        Err(Error::Service {
            endpoint,
            message,
            transient,
        }) => (endpoint, message, transient),
        other => panic!("expected a service error, got {other:?}"),
    }
}

#[test]
fn streamed_pieces_arrive_in_order_while_the_server_is_still_sending() {
    let (tx, rx) = mpsc::channel();
    let role = Part::Write(format!(
        "data: {}\n\n",
        json!({"choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": null}]})
    ));
    let server = serve(vec![Reply::Stream(vec![
        role,
        piece("Hel"),
        // The rest is only sent once the test has seen "Hel": a client that buffered the body would stall here.
        Part::Wait(rx),
        piece("lo"),
        piece(", world"),
        finish("stop"),
        usage(21, 3),
        done(),
    ])]);
    let model = OpenAiModel::from_config(&config(&server.url)).unwrap();
    let mut pieces = Vec::new();
    let completion = model
        .chat(&messages(), &Sampling::default(), &mut |p| {
            pieces.push(p.to_string());
            let _ = tx.send(());
            true
        })
        .unwrap();
    assert!(
        !server.wait_timed_out.load(Ordering::SeqCst),
        "the first piece was not delivered while streaming"
    );
    assert_eq!(pieces, ["Hel", "lo", ", world"]);
    assert_eq!(completion.text, "Hello, world");
    assert_eq!(completion.finish, FinishReason::Stop);
    assert_eq!(
        completion.usage,
        Usage {
            prompt_tokens: 21,
            completion_tokens: 3
        }
    );
    let first = completion.first_token_ms.unwrap();
    assert!(first > 0.0 && first <= completion.total_ms);
}

#[test]
fn request_carries_model_messages_sampling_and_the_bearer_key() {
    let env = "QUARRY_TEST_KEY_REQUEST_BODY";
    std::env::set_var(env, "sk-test-123");
    let server = serve(vec![ok_stream("hi")]);
    let model = OpenAiModel::from_config(&OpenAiConfig {
        api_key_env: env.into(),
        ..config(&server.url)
    })
    .unwrap();
    let sampling = Sampling {
        temperature: 0.5,
        max_tokens: 64,
        seed: 7,
        stop: vec!["\n\n".into()],
        repeat_penalty: 1.1,
        ..Sampling::default()
    };
    model.chat(&messages(), &sampling, &mut |_| true).unwrap();

    let requests = server.requests.lock().unwrap();
    let request = &requests[0];
    assert_eq!(request.header("authorization"), Some("Bearer sk-test-123"));
    assert_eq!(request.header("content-type"), Some("application/json"));
    let body = request.json();
    assert_eq!(body["model"], "test-model");
    assert_eq!(
        body["messages"],
        json!([{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Say hello."}])
    );
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"], json!({"include_usage": true}));
    assert_eq!(body["temperature"], 0.5);
    assert_eq!(body["top_p"], 0.95);
    assert_eq!(body["max_tokens"], 64);
    assert_eq!(body["seed"], 7);
    assert_eq!(body["stop"], json!(["\n\n"]));
    assert_eq!(body["frequency_penalty"], 0.1);
}

#[test]
fn no_key_no_stop_and_no_penalty_are_left_out_of_the_request() {
    let env = "QUARRY_TEST_KEY_EMPTY";
    std::env::set_var(env, "");
    let server = serve(vec![ok_stream("hi")]);
    let model = OpenAiModel::from_config(&OpenAiConfig {
        api_key_env: env.into(),
        ..config(&server.url)
    })
    .unwrap();
    let sampling = Sampling {
        repeat_penalty: 1.0,
        ..Sampling::default()
    };
    model.chat(&messages(), &sampling, &mut |_| true).unwrap();
    let requests = server.requests.lock().unwrap();
    assert_eq!(requests[0].header("authorization"), None);
    let body = requests[0].json();
    assert!(body.get("stop").is_none(), "{body}");
    assert!(body.get("frequency_penalty").is_none(), "{body}");
}

#[test]
fn sse_framing_crlf_comments_multiline_data_and_length_finish() {
    let server = serve(vec![Reply::Stream(vec![
        Part::Write(": keep-alive\r\n\r\n".into()),
        Part::Write("event: message\r\nid: 1\r\nretry: 1000\r\n".into()),
        // One event split over two data lines (joined with a newline, still valid JSON).
        Part::Write("data: {\"choices\":[{\"index\":0,\r\ndata: \"delta\":{\"content\":\"pa\"}}]}\r\n\r\n".into()),
        Part::Write("data:{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"rt\"}}]}\r\n\r\n".into()),
        Part::Write("data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"length\"}]}\r\n\r\n".into()),
        Part::Write("data: [DONE]\r\n\r\n".into()),
    ])]);
    let model = OpenAiModel::from_config(&config(&server.url)).unwrap();
    let (result, pieces) = chat(&model);
    let completion = result.unwrap();
    assert_eq!(pieces, ["pa", "rt"]);
    assert_eq!(completion.finish, FinishReason::Length);
    // No usage chunk: counted locally.
    assert_eq!(
        completion.usage,
        Usage {
            prompt_tokens: model.prompt_tokens(&messages()).unwrap(),
            completion_tokens: model.count_tokens("part"),
        }
    );
}

#[test]
fn a_plain_json_answer_is_accepted_when_the_server_does_not_stream() {
    let body = json!({
        "id": "c1", "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there."}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 17, "completion_tokens": 4, "total_tokens": 21}
    });
    let server = serve(vec![Reply::Full {
        status: 200,
        headers: vec![("Content-Type", "application/json; charset=utf-8")],
        body: body.to_string(),
    }]);
    let model = OpenAiModel::from_config(&config(&server.url)).unwrap();
    let (result, pieces) = chat(&model);
    let completion = result.unwrap();
    assert_eq!(pieces, ["Hello there."]);
    assert_eq!(completion.text, "Hello there.");
    assert_eq!(completion.finish, FinishReason::Stop);
    assert_eq!(
        completion.usage,
        Usage {
            prompt_tokens: 17,
            completion_tokens: 4
        }
    );
}

#[test]
fn rate_limit_is_retried_after_the_servers_retry_after() {
    let server = serve(vec![
        Reply::Full {
            status: 429,
            headers: vec![("Retry-After", "1")],
            body: json!({"error": {"message": "slow down"}}).to_string(),
        },
        ok_stream("after the wait"),
    ]);
    let model = OpenAiModel::from_config(&OpenAiConfig {
        retries: 2,
        ..config(&server.url)
    })
    .unwrap();
    let start = Instant::now();
    let (result, _) = chat(&model);
    assert_eq!(result.unwrap().text, "after the wait");
    assert_eq!(server.request_count(), 2);
    // Backoff alone would have waited 0.5 s.
    assert!(start.elapsed() >= Duration::from_millis(950), "{:?}", start.elapsed());
}

#[test]
fn server_errors_beyond_the_retries_fail_with_the_status_and_message() {
    let server = serve((0..3).map(|_| error_reply(500, "the model crashed")).collect());
    let model = OpenAiModel::from_config(&OpenAiConfig {
        retries: 2,
        ..config(&server.url)
    })
    .unwrap();
    let (endpoint, message, transient) = service_error(chat(&model).0);
    assert_eq!(endpoint, format!("{}/chat/completions", server.url));
    assert!(message.contains("500"), "{message}");
    assert!(message.contains("the model crashed"), "{message}");
    assert!(message.contains("3 attempts"), "{message}");
    assert!(transient);
    assert_eq!(server.request_count(), 3);
}

#[test]
fn a_rejected_key_names_its_variable_and_is_not_retried() {
    let env = "QUARRY_TEST_KEY_REJECTED";
    std::env::set_var(env, "sk-wrong");
    let server = serve(vec![error_reply(401, "Incorrect API key provided"), ok_stream("never")]);
    let model = OpenAiModel::from_config(&OpenAiConfig {
        api_key_env: env.into(),
        retries: 3,
        ..config(&server.url)
    })
    .unwrap();
    let (_, message, transient) = service_error(chat(&model).0);
    assert!(message.contains("api key was rejected"), "{message}");
    assert!(message.contains(env), "{message}");
    assert!(message.contains("Incorrect API key provided"), "{message}");
    assert!(!transient);
    assert_eq!(server.request_count(), 1);
}

#[test]
fn other_client_errors_are_not_retried() {
    let server = serve(vec![error_reply(400, "max_tokens is too large"), ok_stream("never")]);
    let model = OpenAiModel::from_config(&OpenAiConfig {
        retries: 3,
        ..config(&server.url)
    })
    .unwrap();
    let (_, message, transient) = service_error(chat(&model).0);
    assert!(
        message.contains("400") && message.contains("max_tokens is too large"),
        "{message}"
    );
    assert!(!transient);
    assert_eq!(server.request_count(), 1);
}

#[test]
fn a_malformed_event_is_an_error() {
    let server = serve(vec![Reply::Stream(vec![
        piece("fine so far"),
        Part::Write("data: {\"choices\": [oops\n\n".into()),
        done(),
    ])]);
    let model = OpenAiModel::from_config(&config(&server.url)).unwrap();
    let (result, pieces) = chat(&model);
    let (_, message, transient) = service_error(result);
    assert!(message.contains("malformed stream event"), "{message}");
    assert!(!transient);
    assert_eq!(pieces, ["fine so far"]);
}

#[test]
fn a_stream_cut_before_done_is_an_error_and_not_retried() {
    let server = serve(vec![Reply::Stream(vec![piece("half an ans")]), ok_stream("never")]);
    let model = OpenAiModel::from_config(&OpenAiConfig {
        retries: 2,
        ..config(&server.url)
    })
    .unwrap();
    let (_, message, _) = service_error(chat(&model).0);
    assert!(message.contains("ended before the answer was complete"), "{message}");
    assert_eq!(server.request_count(), 1);
}

#[test]
fn a_silent_server_times_out_within_the_configured_time() {
    let server = serve(vec![Reply::Stall(Duration::from_secs(4))]);
    let model = OpenAiModel::from_config(&OpenAiConfig {
        timeout_secs: 1,
        ..config(&server.url)
    })
    .unwrap();
    let start = Instant::now();
    let (_, message, transient) = service_error(chat(&model).0);
    assert!(start.elapsed() < Duration::from_millis(2500), "{:?}", start.elapsed());
    assert!(message.contains("within 1 s"), "{message}");
    assert!(transient);
}

#[test]
fn a_stream_that_stalls_after_output_times_out_without_a_retry() {
    let server = serve(vec![
        Reply::Stream(vec![piece("a"), Part::Sleep(Duration::from_secs(4)), done()]),
        ok_stream("never"),
    ]);
    let model = OpenAiModel::from_config(&OpenAiConfig {
        timeout_secs: 1,
        retries: 2,
        ..config(&server.url)
    })
    .unwrap();
    let start = Instant::now();
    let (result, pieces) = chat(&model);
    let (_, message, transient) = service_error(result);
    assert!(start.elapsed() < Duration::from_millis(2500), "{:?}", start.elapsed());
    assert!(message.contains("within 1 s"), "{message}");
    assert!(transient);
    assert_eq!(pieces, ["a"]);
    assert_eq!(server.request_count(), 1);
}

#[test]
fn a_refused_connection_is_a_transient_error() {
    let url = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/v1", listener.local_addr().unwrap())
    }; // the listener is dropped: nothing listens on the port now
    let model = OpenAiModel::from_config(&OpenAiConfig {
        retries: 1,
        ..config(&url)
    })
    .unwrap();
    let (endpoint, message, transient) = service_error(chat(&model).0);
    assert_eq!(endpoint, format!("{url}/chat/completions"));
    assert!(message.contains("connection refused"), "{message}");
    assert!(transient);
}

#[test]
fn a_callback_returning_false_cancels() {
    let server = serve(vec![Reply::Stream(vec![
        piece("one"),
        piece(" two"),
        piece(" three"),
        finish("stop"),
        done(),
    ])]);
    let model = OpenAiModel::from_config(&config(&server.url)).unwrap();
    let mut calls = 0;
    let completion = model
        .chat(&messages(), &Sampling::default(), &mut |_| {
            calls += 1;
            false
        })
        .unwrap();
    assert_eq!(calls, 1);
    assert_eq!(completion.text, "one");
    assert_eq!(completion.finish, FinishReason::Cancelled);
    assert_eq!(completion.usage.completion_tokens, model.count_tokens("one"));
}

#[test]
fn a_prompt_longer_than_the_window_is_refused_before_sending() {
    let server = serve(vec![ok_stream("never")]);
    let model = OpenAiModel::from_config(&OpenAiConfig {
        context_window: 10,
        ..config(&server.url)
    })
    .unwrap();
    let err = chat(&model).0.unwrap_err();
    assert!(matches!(err, Error::Model { .. }), "{err}");
    assert!(err.to_string().contains("context window of 10"), "{err}");
    assert_eq!(server.request_count(), 0);
}

#[test]
fn identity_window_and_estimated_counts_without_a_tokenizer() {
    let model = OpenAiModel::from_config(&OpenAiConfig {
        base_url: "http://127.0.0.1:9/v1/".into(),
        ..config("unused")
    })
    .unwrap();
    assert_eq!(model.model_id(), "test-model@http://127.0.0.1:9/v1");
    assert_eq!(model.endpoint(), "http://127.0.0.1:9/v1/chat/completions");
    assert_eq!(model.context_window(), 4096);
    assert!(!model.exact_token_counts());
    assert_eq!(model.count_tokens("abcdefg"), 3); // ceil(7 / 3)
    let msgs = [Message::system("abc"), Message::user("abcdef")];
    assert_eq!(model.prompt_tokens(&msgs).unwrap(), (1 + 4) + (2 + 4) + 3);
    let bad = OpenAiModel::from_config(&config("localhost:8080/v1")).unwrap_err();
    assert!(bad.to_string().contains("http://"), "{bad}");
}

#[test]
fn a_tokenizer_gives_exact_counts() {
    let dir = quarry_models::resolve_model_dir("all-MiniLM-L6-v2", None)
        .unwrap_or_else(|e| panic!("the tokenizer test needs the real model (run scripts/setup.sh): {e}"));
    let model = OpenAiModel::from_config(&OpenAiConfig {
        tokenizer: Some(dir.join("tokenizer.json").to_string_lossy().into_owned()),
        ..config("http://127.0.0.1:9/v1")
    })
    .unwrap();
    assert!(model.exact_token_counts());
    assert_eq!(model.count_tokens("hello world"), 2);
    // Longer than the tokenizer's own truncation length: counts are not capped.
    assert_eq!(model.count_tokens(&"word ".repeat(1000)), 1000);
    let msgs = [Message::user("hello world")];
    assert_eq!(model.prompt_tokens(&msgs).unwrap(), 2 + 4 + 3);
}
