"""The vocabulary every layer speaks: the review parser, response builders, the error tree,
the rule catalogue and the label names. Imports nothing else of the project.
"""
