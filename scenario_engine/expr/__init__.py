"""Expressions: the grammar's parser, expression trees, evaluation, values and functions."""
