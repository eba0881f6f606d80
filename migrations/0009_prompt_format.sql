-- 0009: a model's prompt format when the user chose one (`template`, `plain` or a llama.cpp
-- built-in template's name); NULL: the default for the file (its own template, else plain text
-- or its family's built-in template).

ALTER TABLE models ADD COLUMN prompt_format TEXT;
