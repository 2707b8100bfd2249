"""Tables in, tables out: reading and checking poll tables, building ``data/polls.csv`` from the
sourced table and the codebook, and simulated tables with a known truth. No PyMC, no matplotlib."""
