"""oodml.train"""
