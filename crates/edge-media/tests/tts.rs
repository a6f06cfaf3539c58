//! espeak-ng greeting synthesis and its on-disk cache.

use edge_media::resample::rms;
use edge_media::{Tts, TtsError};

#[tokio::test]
async fn speech_is_cached_per_text() {
    let dir = tempfile::tempdir().unwrap();
    let text = "Thanks for calling, nobody can take your call right now.";
    let tts = Tts::new("espeak-ng", dir.path());
    assert!(tts.detect().await, "espeak-ng must be installed");
    let speech = tts.speak(text).await.unwrap();
    let secs = speech.len() as f64 / 8000.0;
    assert!((1.5..6.0).contains(&secs), "{secs} s of speech");
    assert!(rms(&speech) > 500.0, "audible");
    let cached: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
    assert_eq!(cached.len(), 1, "one cache file, no temp files left");

    // Without espeak-ng the cached text still plays; a new text cannot.
    let offline = Tts::new("/nonexistent/espeak-ng", dir.path());
    assert_eq!(offline.speak(text).await.unwrap(), speech);
    assert!(matches!(
        offline.speak("Something else").await,
        Err(TtsError::Unavailable)
    ));
    assert!(!offline.detect().await);

    let long = "word ".repeat(500);
    assert!(matches!(tts.speak(&long).await, Err(TtsError::TextTooLong)));
    // Option-looking text is spoken, not parsed as an espeak-ng flag.
    assert!(tts.speak("--help me please").await.unwrap().len() > 4000);
}
