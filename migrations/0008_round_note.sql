-- 0008: a note on a round that finished but did less than asked, e.g. why it made no
-- preference pairs ("all 128 answers scored 0: the verifier read no number in 97 of them"),
-- so the CLI, the app and the run's state can say so instead of a silent "done".

ALTER TABLE rounds ADD COLUMN note TEXT;
