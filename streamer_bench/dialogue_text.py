"""What the multi-voice test speech says: dialogues with quick replies, short commands.

Each dialogue line is ``(speaker index, text)``; speaker 0 speaks first. The lines mix long turns with
one- and two-word replies ("Right.", "Yes, exactly."), because a short reply straight after a long turn
is where a speaker label goes wrong. No digits, as in :mod:`streamer_bench.corpus_text`.
"""

from __future__ import annotations

Line = tuple[int, str]

TWO_SPEAKERS: tuple[tuple[Line, ...], ...] = (
    (
        (0, "Did you manage to finish the slides for tomorrow's meeting?"),
        (1, "Almost. I still need the sales numbers from the last quarter."),
        (0, "I sent those this morning, check your inbox."),
        (1, "Oh, right, I see them now."),
        (0, "Great. Can you also add a short summary at the end?"),
        (1, "Sure."),
        (0, "And keep it under ten slides, people lose focus after that."),
        (1, "Okay, that makes sense. Should I send you a draft tonight?"),
        (0, "Yes, please, before nine if you can."),
        (1, "No problem, I will do that."),
        (0, "Thanks, that really helps."),
        (1, "Of course. See you tomorrow then."),
    ),
    (
        (0, "Excuse me, is this the train to the airport?"),
        (1, "No, this one goes downtown. You need the blue line."),
        (0, "Really? Where do I catch it?"),
        (1, "Go down the stairs and follow the signs to platform four."),
        (0, "Platform four, got it."),
        (1, "It leaves every ten minutes, so you have plenty of time."),
        (0, "That is good news. How long is the ride?"),
        (1, "About half an hour, depending on traffic."),
        (0, "Perfect, thank you so much."),
        (1, "You're welcome. Have a safe flight."),
    ),
    (
        (0, "So what did you think of the movie?"),
        (1, "Honestly, I expected more from the ending."),
        (0, "Me too! It felt rushed."),
        (1, "Exactly. The first hour was brilliant, though."),
        (0, "The music was great as well."),
        (1, "Yes."),
        (0, "Would you watch the sequel if they make one?"),
        (1, "Probably, if the same director comes back."),
        (0, "Fair enough."),
        (1, "What about you?"),
        (0, "I would go on the first day, no question."),
    ),
)

THREE_SPEAKERS: tuple[tuple[Line, ...], ...] = (
    (
        (0, "Okay everyone, let's start with the project update."),
        (1, "The design is done, we finished it on Tuesday."),
        (2, "And the testing starts next week, if the servers are ready."),
        (0, "Are they ready?"),
        (2, "Not yet, we are waiting for the new hardware."),
        (1, "I can call the supplier this afternoon."),
        (0, "Please do. What else is blocking us?"),
        (2, "Nothing else, really."),
        (1, "Maybe the budget for the extra licenses."),
        (0, "Right, I will talk to finance about that."),
        (2, "Thanks."),
        (1, "Should we meet again on Friday?"),
        (0, "Yes, same time, same room."),
    ),
    (
        (0, "Who wants to order lunch today?"),
        (1, "Me, I'm starving."),
        (2, "Count me in as well."),
        (0, "Pizza or sandwiches?"),
        (2, "Pizza, definitely."),
        (1, "I would rather have a salad, if that is possible."),
        (0, "Sure, the place around the corner does both."),
        (1, "Perfect."),
        (2, "Can you get extra cheese on mine?"),
        (0, "Of course. I'll place the order now."),
    ),
)

COMMANDS: tuple[str, ...] = (
    "Next slide, please.",
    "Stop the recording.",
    "Turn the volume down.",
    "Open the calendar.",
    "Call my sister.",
    "Go back.",
    "Set a timer for ten minutes.",
    "Mute the microphone.",
    "Read my messages.",
    "Pause the music.",
    "What time is it?",
    "Cancel that.",
)
