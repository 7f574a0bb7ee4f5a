//! A subscriber of a shared watch cache that cannot go deaf.
//!
//! kube-runtime's `ReflectHandle` receives an object reference and then reads
//! the object from the store; when the object is already gone (deleted right
//! after it was created, before the subscriber read it), it answers
//! `Pending` without having registered a waker. Inside a controller's merged
//! trigger streams nothing polls it again: that kind's controller never sees
//! another object (found by the chaos suite: objects deleted while being
//! created left every later EtlSink, or EtlTransform, without a status).
//! [`Subscription`] polls it again whenever a `Pending` left no waker behind.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use futures::Stream;

/// Wakes the task's own waker; whoever keeps a clone will wake it later.
struct Tracked(Waker);

impl Wake for Tracked {
    fn wake(self: Arc<Self>) {
        self.0.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.wake_by_ref();
    }
}

pub struct Subscription<S>(pub S);

impl<S: Stream + Unpin> Stream for Subscription<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        loop {
            let tracked = Arc::new(Tracked(cx.waker().clone()));
            let waker = Waker::from(tracked.clone());
            let polled = Pin::new(&mut self.0).poll_next(&mut Context::from_waker(&waker));
            drop(waker);
            // Ready, or Pending with the waker kept to wake this task later.
            if polled.is_ready() || Arc::strong_count(&tracked) > 1 {
                return polled;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::{FutureExt, StreamExt, stream};
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::reflector::store::Writer;
    use kube::runtime::{WatchStreamExt, watcher};

    use super::Subscription;

    fn config_map(name: &str) -> ConfigMap {
        let mut object = ConfigMap::default();
        object.metadata.name = Some(name.to_owned());
        object.metadata.namespace = Some("n".to_owned());
        object
    }

    #[tokio::test]
    async fn an_object_gone_before_it_is_read_does_not_deafen_the_subscriber() {
        let writer = Writer::<ConfigMap>::new_shared(16, ());
        let mut subscriber = Subscription(writer.subscribe().unwrap());
        let events = vec![
            Ok(watcher::Event::Apply(config_map("created-and-deleted"))),
            Ok(watcher::Event::Delete(config_map("created-and-deleted"))),
            Ok(watcher::Event::Apply(config_map("next"))),
        ];
        stream::iter(events).reflect_shared(writer).for_each(|_| async {}).await;
        // Everything is buffered: one poll must find the next object (a
        // plain ReflectHandle answers Pending, and nothing would wake it).
        let next = subscriber.next().now_or_never();
        let name = next.expect("the subscriber answers at once").expect("an object").metadata.name.clone();
        assert_eq!(name.as_deref(), Some("next"));
    }
}
