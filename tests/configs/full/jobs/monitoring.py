print('monitoring')
