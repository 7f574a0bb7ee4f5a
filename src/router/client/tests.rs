//! Unit tests of the router client.

use super::*;

#[test]
fn members_key_ignores_order_and_duplicates() {
    let a = ["10.0.0.2:50051".to_string(), "10.0.0.1:50051".to_string()];
    let b = ["10.0.0.1:50051".to_string(), "10.0.0.2:50051".to_string(), "10.0.0.1:50051".to_string()];
    assert_eq!(members_key(&a), members_key(&b));
    assert_ne!(members_key(&a), members_key(&a[..1]));
}

#[test]
fn default_options_are_bounded() {
    let options = ClientOptions::default();
    assert_eq!(options.call_timeout, Duration::from_secs(3));
    assert_eq!(options.connect_timeout, Duration::from_secs(1));
    assert!(options.max_attempts >= 2 && options.min_backoff > Duration::ZERO);
    assert!(options.max_backoff >= options.min_backoff);
}

#[tokio::test]
async fn invalid_member_is_a_permanent_error_without_a_call() {
    let client = RouterClient::new(ClientOptions::default());
    let error = client.member_status("not a host:1").await.unwrap_err();
    assert!(matches!(error, RouterError::InvalidMember { .. }), "{error:?}");
    let error = client.create_pipeline(&[], PipelineConfig::default()).await.unwrap_err();
    assert_eq!(error, RouterError::NoMembers);
}
