"""oodml.metrics"""
