"""What the held-out multi-voice speech says: dialogues no threshold was chosen on.

The speaker thresholds (:mod:`streamer.pipeline.speakers`) were chosen on the dialogues of
:mod:`streamer_bench.dialogue_text`; these scripts, with their own seed and voice pairings
(:func:`streamer_bench.dialogue.heldout_params`), measure them. Same shape as the tuning scripts: long
turns mixed with one- and two-word replies, ``(speaker index, text)`` lines, no digits.
"""

from __future__ import annotations

from streamer_bench.dialogue_text import Line

TWO_SPEAKERS: tuple[tuple[Line, ...], ...] = (
    (
        (0, "Hi, I'm calling about the apartment you posted online."),
        (1, "Yes, it's still available. Would you like to see it?"),
        (0, "I would. Is it close to a grocery store?"),
        (1, "There is one just across the street."),
        (0, "Nice."),
        (1, "The rent includes water and heating, but not electricity."),
        (0, "Understood. Are pets allowed in the building?"),
        (1, "Small ones, yes."),
        (0, "I have a little cat, she is very quiet."),
        (1, "That should be fine. How about a viewing on Saturday morning?"),
        (0, "Saturday works for me."),
        (1, "Great, I will text you the address."),
    ),
    (
        (0, "Doctor, I have had a headache for three days now."),
        (1, "I'm sorry to hear that. Is it worse in the morning or in the evening?"),
        (0, "Mostly in the evening, after work."),
        (1, "Do you spend a lot of time looking at a screen?"),
        (0, "All day, unfortunately."),
        (1, "Then try to take a short break every hour and drink more water."),
        (0, "Should I take anything for the pain?"),
        (1, "A mild painkiller is fine, but not every day."),
        (0, "Okay."),
        (1, "If it does not get better within a week, come back and see me."),
        (0, "I will. Thank you, doctor."),
    ),
    (
        (0, "Are you coming to the football game on Sunday?"),
        (1, "I'd love to, but I promised to help my brother move."),
        (0, "That's a shame. It's the last game of the season."),
        (1, "I know. Will someone record it?"),
        (0, "Probably, the club usually puts it online."),
        (1, "Good."),
        (0, "We are going to a restaurant afterwards, if you want to join us."),
        (1, "That might work, the move should be finished by six."),
        (0, "Great, I will send you the name of the place."),
        (1, "Thanks, see you there."),
    ),
)

THREE_SPEAKERS: tuple[tuple[Line, ...], ...] = (
    (
        (0, "Welcome back to the show. Today we are talking about gardening."),
        (1, "Thanks for having us."),
        (2, "It's a pleasure to be here."),
        (0, "So, what should beginners plant first?"),
        (1, "Herbs, definitely. Basil and mint grow almost anywhere."),
        (2, "And tomatoes, if you have a sunny balcony."),
        (0, "How often do they need water?"),
        (2, "Every morning in the summer."),
        (1, "But never in the middle of the day."),
        (0, "Good to know."),
        (2, "Also, talk to your plants, they seem to like it."),
        (1, "That's true, I do it all the time."),
    ),
    (
        (0, "Let's plan the trip. Mountains or the beach this year?"),
        (1, "Mountains, please. I want to go hiking."),
        (2, "I'd prefer the beach, to be honest."),
        (0, "What if we do both, a week each?"),
        (1, "That sounds expensive."),
        (2, "Not if we take the train and stay in small hostels."),
        (0, "Good point. Who can look up the prices?"),
        (2, "I can do it tonight."),
        (1, "And I will check the hiking routes."),
        (0, "Perfect, let's talk again on Thursday."),
    ),
)
