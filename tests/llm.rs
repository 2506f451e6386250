//! LLM spans: GenAI attributes become the `llm` object, the prompt and
//! completion move to the blob store on every replica, identical text is
//! stored once, and bad blob requests get clear errors.

mod common;

use common::*;

const PROMPT: &str = "Summarize the incident: 3 nodes, one partitioned. Ünïcode ✓";
const COMPLETION: &str = "The minority node stepped down; no acknowledged write was lost.";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llm_spans_keep_hashes_and_every_replica_serves_the_text() {
    let c = TestCluster::start(3, &[]);
    c.init().await;
    let leader = c.wait_leader().await;
    let follower = (1..=3).find(|&n| n != leader).unwrap();

    // Two LLM spans with the same prompt, different completions.
    let mut req = trace_request("agent", 7, 2);
    for (i, span) in req.resource_spans[0].scope_spans[0]
        .spans
        .iter_mut()
        .enumerate()
    {
        span.kind = 3;
        span.attributes.extend([
            kv("gen_ai.provider.name", "openai"),
            kv("gen_ai.request.model", "gpt-4o-mini"),
            kv("gen_ai.operation.name", "chat"),
            kv("gen_ai.usage.input_tokens", "42"),
            kv("gen_ai.usage.output_tokens", "7"),
            kv("gen_ai.prompt", PROMPT),
            kv("gen_ai.completion", &format!("{COMPLETION} #{i}")),
        ]);
    }
    let mut client = c.otlp_client(follower).await;
    export(&mut client, req).await.unwrap();

    let r = c
        .get(leader, &format!("/api/v1/traces/{}", trace_hex(7)))
        .await;
    assert_eq!(r.status, 200);
    let v = r.json().unwrap();
    let spans = v["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 2);
    for s in spans {
        assert_eq!(s["kind"], "llm", "{s}");
        let llm = &s["llm"];
        assert_eq!(llm["provider"], "openai");
        assert_eq!(llm["model"], "gpt-4o-mini");
        assert_eq!(llm["operation"], "chat");
        assert_eq!(llm["total_tokens"], 49);
        assert!(
            s["attributes"].get("gen_ai.prompt").is_none(),
            "text moved out: {s}"
        );
        assert!(s["attributes"].get("gen_ai.completion").is_none());
        assert_eq!(s["attributes"]["gen_ai.request.model"], "gpt-4o-mini");
    }
    let prompt_hash = spans[0]["llm"]["prompt_sha256"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        prompt_hash,
        spans[1]["llm"]["prompt_sha256"].as_str().unwrap(),
        "one prompt, one blob"
    );
    assert_ne!(
        spans[0]["llm"]["completion_sha256"],
        spans[1]["llm"]["completion_sha256"]
    );

    for node in 1..=3 {
        let r = c.get(node, &format!("/api/v1/blobs/{prompt_hash}")).await;
        assert_eq!(r.status, 200, "node {node}");
        assert_eq!(String::from_utf8(r.body).unwrap(), PROMPT, "node {node}");
        for s in spans {
            let h = s["llm"]["completion_sha256"].as_str().unwrap();
            let r = c.get(node, &format!("/api/v1/blobs/{h}")).await;
            let text = String::from_utf8(r.body).unwrap();
            assert!(text.starts_with(COMPLETION), "node {node}: {text}");
        }
    }

    let r = c
        .get(follower, &format!("/api/v1/blobs/{}", "0".repeat(64)))
        .await;
    assert_eq!(r.status, 404);
    for bad in ["xyz", "abcd", &"g".repeat(64)] {
        let r = c.get(follower, &format!("/api/v1/blobs/{bad}")).await;
        assert_eq!(r.status, 400, "{bad}");
        assert!(r.json().unwrap()["error"]
            .as_str()
            .unwrap()
            .contains("sha256"));
    }
}
