"""OpenAI's surfaces: Realtime transcription sessions (``socket``: the connection; ``wire``: the events
and session shapes it reads; ``state``: the session's settings; ``options``: which are honoured or refused;
``render``: the events it sends; ``client_secrets``: the REST routes that issue its secrets; ``rest``:
OpenAI's error shape), the model list (``models``) and the ``diarized_json`` answer (``diarized``)."""
