print('inference')
