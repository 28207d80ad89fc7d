"""estimator/backends"""
