"""The English sentences of the realistic speech corpus, and what counts as a content word.

Written for read speech the way people talk: most have commas and clauses, so the voice pauses inside
the sentence, which is where a streaming segmenter is tempted to cut. No digits or abbreviations: the
model may write "seven" or "7", and scoring should not depend on that choice.
"""

from __future__ import annotations

from streamer_bench.wer import words

SENTENCES: tuple[str, ...] = (
    "Please, keep your voice down.",
    "The meeting starts at noon, so bring your notes.",
    "When the rain stopped, we walked home along the river.",
    "I called the office twice, but nobody answered the phone.",
    "If you need help with the boxes, just let me know.",
    "She opened the window, took a deep breath, and smiled.",
    "The train was late again this morning.",
    "After dinner, my brother washed the dishes while I dried them.",
    "Honestly, I think the second plan is much better.",
    "Turn left at the bakery, then keep going until you see the bridge.",
    "Our neighbors have a small garden full of tomatoes and beans.",
    "Could you send me the report before Friday afternoon?",
    "The children laughed, because the puppy kept chasing its own tail.",
    "We should probably leave early, since the roads will be busy.",
    "My grandmother still writes letters by hand, every single week.",
    "Thank you for waiting, I know it took a while.",
    "The library closes early on Sundays, but the reading room stays open later.",
    "Although the test was difficult, most students finished on time.",
    "He forgot his umbrella, so he arrived completely soaked.",
    "Let me check the calendar, and I will get back to you.",
    "The coffee machine upstairs is broken again.",
    "In the summer, we usually drive to the coast for a week.",
    "If the weather is nice tomorrow, we could have lunch in the park.",
    "The doctor said I should drink more water and sleep longer.",
    "Wait a moment, I think I left my keys in the car.",
    "The museum has a new exhibition about ancient ships and sailors.",
    "Before you sign the contract, read every page carefully.",
    "Well, that was not what I expected at all.",
    "The restaurant was crowded, noisy, and a little too expensive.",
    "Every morning, the baker opens his shop before the sun comes up.",
    "We missed the last bus, so we had to walk across the whole town.",
    "Can you hear me clearly now, or should I move closer?",
    "The engineers replaced the old cables, and the network became much faster.",
    "My sister plays the violin, and she practices every evening after school.",
    "During the storm, the power went out for most of the night.",
    "The garden looks beautiful in the spring, when the flowers are blooming.",
    "Please remember to lock the door, turn off the lights, and feed the cat.",
    "The farmer sold fresh eggs, honey, and apples at the market on Saturday.",
    "I am not sure, but I believe the package arrived yesterday.",
    "When you get to the station, call me, and I will pick you up.",
    "The pilot announced that we would land a little earlier than planned.",
    "Good morning, everyone, and welcome to the meeting.",
    "Although it was cold outside, the kitchen was warm and smelled of fresh bread.",
    "The teacher explained the problem slowly, drawing each step on the board.",
    "After a long day at work, I just want to sit down and read a good book.",
    "The old wooden bridge over the river was finally repaired last autumn, "
    "and now the children cross it every morning on their way to school.",
    "When we finally reached the top of the hill, after walking for most of the afternoon, the whole valley "
    "opened up below us, with its farms, its little church, and the river shining in the evening light.",
    "If you are planning to visit the city next month, I would suggest booking a hotel near the old harbor, "
    "because the restaurants there are excellent, and you can walk to most of the museums.",
    "My uncle, who worked as a carpenter for most of his life, built the kitchen table we still use today, "
    "and he always said that good wood, like good friends, only gets better with age.",
    "Before the concert started, the conductor thanked the audience, reminded everyone to switch off their "
    "phones, and then, after a long and rather dramatic pause, lifted his baton.",
)

# A conversation between two people, one line a turn, for the dialogue input: quick turns (the corpus puts
# under 0.5 s between them), short replies among longer ones, questions answered at once.
DIALOGUE: tuple[str, ...] = (
    "Are you coming to the meeting this afternoon?",
    "Yes, but I might be a few minutes late.",
    "That is fine, we will start with the budget anyway.",
    "Good, because I still have to finish the slides.",
    "Do you need any help with them?",
    "No, thanks, I am almost done.",
    "By the way, did you book the room?",
    "I did, the big one upstairs.",
    "Great, the projector there works much better.",
    "Should we order lunch for everyone?",
    "Maybe sandwiches, nothing too heavy.",
    "Okay, I will call the bakery before lunch.",
    "Ask them for something without nuts, please.",
    "Right, because of Anna.",
    "Exactly, she reminded me yesterday.",
    "How many people are coming in the end?",
    "All of us, if the visitors from the north office make it.",
    "Their train was delayed this morning, I heard.",
    "Then we can move their part to the end.",
    "Sounds good, let me tell them now.",
    "And send me the slides when they are ready.",
    "Sure, in a little while.",
    "Perfect, see you later then.",
    "See you, and thanks for organizing all this.",
)

# Short spoken commands, each 1-2 s when synthesised (the corpus stretches a clip into that range). Like the
# sentences, no numbers: the model may write "ten" or "10".
COMMANDS: tuple[str, ...] = (
    "Turn on the living room lights.",
    "Call my sister.",
    "Set a timer for the oven.",
    "Open the garage door.",
    "Turn the volume down.",
    "Remind me at noon.",
    "What is the weather today?",
    "Read my new messages.",
    "Turn off the kitchen lights.",
    "Add milk to the shopping list.",
    "Next page, please.",
    "Start the dishwasher.",
    "Mute the television.",
    "Close all the windows.",
    "Skip to the next song.",
    "Pause the movie.",
    "Lock the front door.",
    "Cancel my morning alarm.",
    "Show me the map.",
    "Send the email now.",
)

# Function words: what a listener can lose without losing the sentence. Content-word checks look only at
# the rest, so "a" for "the" does not fail a test while "boy" for "voice" does.
_STOPWORD_TEXT = """
    a an the and or but so if then than as at by for from in into of on onto to with without up down
    out over under about after before during until while since because although though when where why how
    what which who whom whose that this these those there here it its it's i i'm i'll me my mine we us our
    you your yours he him his she her they them their is am are was were be been being do does did have
    has had will would shall should can could may might must not no yes just very too also all any each
    every some much more most many few own same such only still again ever even well let let's get got
    oh okay
"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())


def content_words(text: str) -> list[str]:
    """The words of ``text`` that carry its meaning (split as ``wer.words`` does), in order."""
    return [w for w in words(text) if w not in STOPWORDS]
