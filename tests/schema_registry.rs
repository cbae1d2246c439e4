//! The Confluent wire format: the snapshot schema is registered with a schema registry (a
//! stand-in speaking the registry's REST protocol on loopback) and its id framed in.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use hotline::avro::SCHEMA_JSON;
use hotline::schema_registry::register;
use serde_json::{Value, json};

type Seen = Arc<Mutex<Vec<(String, Value)>>>;

async fn registry(answer: StatusCode) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let app = Router::new()
        .route(
            "/subjects/{subject}/versions",
            post(move |State(seen): State<Seen>, Path(subject): Path<String>, body: String| async move {
                seen.lock().unwrap().push((subject, serde_json::from_str(&body).unwrap()));
                (answer, axum::Json(json!({"id": 21})))
            }),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

#[tokio::test]
async fn the_schema_is_registered_under_the_topic_value_subject() {
    let (url, seen) = registry(StatusCode::OK).await;
    let id = register(&url, "hotline.snapshots-value", SCHEMA_JSON).await.unwrap();
    assert_eq!(id, 21);
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0].0, "hotline.snapshots-value");
    assert_eq!(seen[0].1["schema"].as_str().unwrap(), SCHEMA_JSON);
}

#[tokio::test]
async fn a_registry_error_is_reported() {
    let (url, _) = registry(StatusCode::CONFLICT).await;
    let err = register(&url, "s-value", SCHEMA_JSON).await.unwrap_err();
    assert!(err.to_string().contains("409"), "{err}");
}
