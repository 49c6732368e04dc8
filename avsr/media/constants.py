"""The toolkit's media conventions: everything downstream assumes 25 fps video and 16 kHz mono audio,
so one video frame spans exactly 640 audio samples."""

VIDEO_FPS: float = 25.0
AUDIO_RATE: int = 16000
SAMPLES_PER_FRAME: int = AUDIO_RATE // int(VIDEO_FPS)  # 640
