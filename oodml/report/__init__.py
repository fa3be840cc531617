"""oodml.report"""
