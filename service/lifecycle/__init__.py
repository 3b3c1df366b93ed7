"""A report's life: its statuses and moves (states), what can happen and how it reads (events), and the
one door through which every change goes (changes)."""
