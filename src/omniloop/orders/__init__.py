"""Orders: purchases from POS and e-commerce systems, with their lines and refunds.

Orders are the source of truth for spend: loyalty earns from them and reverses on their
refunds; analytics reads customer, time, channel, store, totals and lines from them.
"""
