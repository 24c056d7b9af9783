//! The trace of one capture: the tree of spans (capture, stage, plugin, http, ledger) and step
//! events the engine emits, as an insta snapshot; and no secret or body in any field.

use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

use crate::{TOKEN, emulator, engine_with_store, sample, sqlite_store};

#[derive(Debug, Default)]
struct Node {
    parent: Option<usize>,
    text: String,
    fields: Vec<(String, String)>,
}

/// Records every span and event of the engine (`capture_engine` targets) as a tree.
#[derive(Clone, Default)]
struct Tree(Arc<Mutex<Vec<Node>>>);

struct Fields<'a>(&'a mut Vec<(String, String)>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        match self.0.iter_mut().find(|(k, _)| k == field.name()) {
            Some(slot) => slot.1 = text,
            None => self.0.push((field.name().to_owned(), text)),
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.record_debug(field, &format_args!("{value}"));
    }
}

/// Index of a span's node, kept in the span's extensions.
struct NodeIndex(usize);

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Tree {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if !attrs.metadata().target().starts_with("capture_engine") {
            return;
        }
        let Some(span) = ctx.span(id) else { return };
        let parent = span.scope().skip(1).find_map(|p| p.extensions().get::<NodeIndex>().map(|n| n.0));
        let mut node = Node { parent, text: format!("span {}", attrs.metadata().name()), fields: Vec::new() };
        attrs.record(&mut Fields(&mut node.fields));
        let mut nodes = self.0.lock().expect("nodes");
        nodes.push(node);
        span.extensions_mut().insert(NodeIndex(nodes.len() - 1));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let Some(i) = span.extensions().get::<NodeIndex>().map(|n| n.0) else { return };
        values.record(&mut Fields(&mut self.0.lock().expect("nodes")[i].fields));
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if !event.metadata().target().starts_with("capture_engine") {
            return;
        }
        let parent = ctx
            .event_scope(event)
            .and_then(|mut s| s.find_map(|p| p.extensions().get::<NodeIndex>().map(|n| n.0)));
        let mut node = Node { parent, text: "event".into(), fields: Vec::new() };
        event.record(&mut Fields(&mut node.fields));
        self.0.lock().expect("nodes").push(node);
    }
}

impl Tree {
    fn render(&self) -> String {
        let nodes = self.0.lock().expect("nodes");
        let mut out = String::new();
        fn walk(nodes: &[Node], parent: Option<usize>, depth: usize, out: &mut String) {
            for (i, n) in nodes.iter().enumerate().filter(|(_, n)| n.parent == parent) {
                let fields: Vec<String> = n.fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
                out.push_str(&format!("{}{} {}\n", "  ".repeat(depth), n.text, fields.join(" ")));
                walk(nodes, Some(i), depth + 1, out);
            }
        }
        walk(&nodes, None, 0, &mut out);
        out
    }
}

#[tokio::test]
async fn the_span_tree_of_one_capture() {
    let emu = emulator().await;
    let engine =
        engine_with_store("optty", &emu.base_url(), &[], &[("bearer_token", TOKEN)], sqlite_store("traces"));
    let tree = Tree::default();
    let subscriber = tracing_subscriber::registry().with(tree.clone());
    let report = {
        let _guard = tracing::subscriber::set_default(subscriber);
        engine.capture_json(&sample("full-capture.json")).await.expect("valid")
    };
    assert_eq!(report.outcome.status(), "captured");
    let text = tree.render();
    assert!(!text.contains(TOKEN), "no credential in a trace");
    assert!(!text.contains("captureReference"), "no body in a trace");
    insta::assert_snapshot!(text);
}
