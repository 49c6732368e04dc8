"""avsr-serve: a local web page to see and hear what the model reads.

One page (``assets/``, plain HTML and JavaScript, no build step) and the JSON API it uses, served
by the standard library's ``ThreadingHTTPServer`` (`app`). Uploads arrive as the raw request body,
so no multipart parsing is needed. Each upload is a job (`jobs`): one worker thread decodes one
file at a time, the others wait in a queue. A job reads the file once (`analysis`: the face chain
and mouth crops of ``avsr-decode``), decodes it audio-only, lips-only and audio-visually, and keeps
the read input so the noise slider (`noise`) re-decodes it without reading it again.

This package sits at the command layer (it loads the recogniser and answers people), depending
only downwards; ``avsr.cli.serve`` is its command.
"""
