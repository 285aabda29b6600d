"""Domain errors. Each carries the wire code, whether retrying can help, and how the edge reports it.

The edge (``streamer.session``) is the one place that turns these into HTTP statuses, ``error`` events and
close codes; everything below it only raises.
"""

from __future__ import annotations

from streamer.protocol import CloseCode


class StreamerError(Exception):
    """Base class: ``code`` is the stable machine-readable name sent to clients."""

    code = "internal_error"
    status = 500
    close_code = CloseCode.INTERNAL_ERROR
    retryable = False
    # set where a refusal is counted under a reason finer than ``code`` (admission, the state backend), so
    # that the edge which answers it does not count it a second time (Metrics.refused)
    counted = False

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class ConfigError(StreamerError):
    """Bad server configuration (start-up) or a bad session config (request)."""

    code = "invalid_config"
    status = 400
    close_code = CloseCode.POLICY


class ModelNotFoundError(StreamerError):
    code = "model_not_found"
    status = 500


class BadRequestError(StreamerError):
    code = "bad_request"
    status = 400
    close_code = CloseCode.POLICY


class InvalidAudioError(StreamerError):
    code = "invalid_audio"
    status = 400
    close_code = CloseCode.POLICY


class FrameTooLargeError(StreamerError):
    code = "frame_too_large"
    status = 413
    close_code = CloseCode.TOO_LARGE


class UnsupportedLanguageError(StreamerError):
    code = "unsupported_language"
    status = 400
    close_code = CloseCode.POLICY


class AuthError(StreamerError):
    code = "unauthorized"
    status = 401
    close_code = CloseCode.POLICY


class ForbiddenError(StreamerError):
    code = "forbidden"
    status = 403
    close_code = CloseCode.POLICY


class RateLimitedError(StreamerError):
    """A rate or quota limit. ``code`` is overridden per limit (e.g. ``audio_rate_exceeded``)."""

    code = "rate_limited"
    status = 429
    close_code = CloseCode.POLICY
    retryable = True

    def __init__(self, message: str, *, code: str = "rate_limited", retry_after: float | None = None) -> None:
        super().__init__(message, retry_after=retry_after)
        self.code = code


class OverloadedError(StreamerError):
    code = "overloaded"
    status = 503
    close_code = CloseCode.TRY_AGAIN_LATER
    retryable = True


class ModelUnavailableError(StreamerError):
    """The model's circuit breaker is open or a model call failed: try again later."""

    code = "model_unavailable"
    status = 503
    close_code = CloseCode.TRY_AGAIN_LATER
    retryable = True


class SessionNotFoundError(StreamerError):
    code = "session_not_found"
    status = 404
    close_code = CloseCode.POLICY


class SessionLimitError(StreamerError):
    code = "session_too_long"
    status = 400
    close_code = CloseCode.POLICY


class SessionIdleError(StreamerError):
    """The client sent no audio and no message for the idle timeout: its slot goes to someone else."""

    code = "session_idle"
    status = 400
    close_code = CloseCode.POLICY
